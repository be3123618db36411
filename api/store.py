"""The API's adapter over the Redis data model (common.records): runs its operations on the
asyncio client. The rules live in the model; this adds none."""

from __future__ import annotations

import secrets
import uuid

import redis.asyncio as aioredis

from common import contract
from common.models import Build, BuildStatus, Deployment
from common.records import builds as build_ops
from common.records import deployments as deployment_ops
from common.records import keys
from common.records.builds import TransitionResult
from common.records.call import AsyncRunner
from common.records.deployments import ActiveBuilds, SubdomainTaken
from common.tokens import Principal, lookup

__all__ = ["ActiveBuilds", "Principal", "RecordStore", "SubdomainTaken", "new_id", "new_webhook_secret"]


class RecordStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._run = AsyncRunner(redis).run

    # Tokens

    async def authenticate(self, token: str) -> Principal | None:
        return await self._run(lookup(token))

    # Deployments

    async def create_deployment(self, deployment: Deployment) -> Deployment:
        return await self._run(deployment_ops.create(deployment))

    async def get_deployment(self, tenant: str, deployment_id: str) -> Deployment | None:
        deployment = await self.get_any_deployment(deployment_id)
        # Another tenant's deployment is answered exactly like a missing one.
        return deployment if deployment is not None and deployment.tenant == tenant else None

    async def get_any_deployment(self, deployment_id: str) -> Deployment | None:
        """A deployment whatever its tenant: for webhooks, which prove themselves by its secret."""
        return await self._run(deployment_ops.load(deployment_id))

    async def set_webhook_secret(self, deployment_id: str, secret: str) -> bool:
        """Replaces a deployment's webhook secret; False if the deployment is gone."""
        return await self._run(deployment_ops.set_webhook_secret(deployment_id, secret))

    async def list_deployments(
        self, tenant: str, limit: int, before: int | None
    ) -> tuple[list[tuple[Deployment, str]], int | None]:
        """One page of a tenant's deployments with their statuses, in one round trip."""
        return await self._run(deployment_ops.page(tenant, limit, before))

    async def deployment_statuses(self, deployments: list[Deployment]) -> list[str]:
        """Each deployment's status: its latest build's status, or "created"."""
        return await self._run(deployment_ops.statuses(deployments))

    async def delete_deployment(self, deployment: Deployment) -> None:
        await self._run(deployment_ops.delete(deployment))

    async def record_upload(self, deployment_id: str, sha256: str, size: int, has_dockerfile: bool) -> None:
        await self._run(deployment_ops.record_upload(deployment_id, sha256, size, has_dockerfile))

    # Builds

    async def create_build(self, build: Build) -> Build | None:
        """Stores a new pending build; None if its deployment was deleted meanwhile."""
        return await self._run(build_ops.create(build))

    async def get_build(self, deployment_id: str, build_id: str) -> Build | None:
        build = await self._run(build_ops.load(build_id))
        return build if build is not None and build.deployment_id == deployment_id else None

    async def list_builds(
        self, tenant: str, deployment_id: str, status: str | None, limit: int, before: int | None
    ) -> tuple[list[contract.Build], int | None] | None:
        """One page of the tenant's deployment's builds as clients see them, in one round trip;
        None if the deployment is not the tenant's."""
        return await self._run(build_ops.page(tenant, deployment_id, status, limit, before))

    async def transition(
        self,
        build: Build,
        to: BuildStatus,
        fields: dict[str, str] | None = None,
        expected: frozenset[BuildStatus] | None = None,
    ) -> TransitionResult:
        return await self._run(
            build_ops.transition(build.id, build.deployment_id, to, fields, expected=expected)
        )

    async def claim_idempotency_key(self, deployment: Deployment, key: str, build_id: str) -> str | None:
        """Records `build_id` for the key; returns the build id recorded earlier, if any."""
        return await self._run(
            deployment_ops.claim_once(keys.idempotency(deployment.tenant, deployment.id, key), build_id)
        )

    async def claim_webhook_delivery(
        self, deployment: Deployment, provider: str, delivery_id: str, build_id: str
    ) -> str | None:
        """Like claim_idempotency_key, for a webhook delivery id: a redelivery gets the same build."""
        name = keys.webhook_delivery(deployment.id, provider, delivery_id)
        return await self._run(deployment_ops.claim_once(name, build_id))

    async def release_webhook_delivery(self, deployment: Deployment, provider: str, delivery_id: str) -> None:
        """Forgets a delivery whose build could not be queued, so that a redelivery tries again."""
        await self._run(deployment_ops.forget(keys.webhook_delivery(deployment.id, provider, delivery_id)))

    async def supersede_queued(self, newer: Build) -> None:
        """Cancels the builds of the deployment still waiting in the queue behind `newer`."""
        await self._run(build_ops.supersede_queued(newer))

    async def request_cancel(self, build: Build, requested_by: str) -> None:
        """Flags a running build; its worker sees the flag within a second and stops it."""
        await self._run(build_ops.request_cancel(build, requested_by))


def new_id() -> str:
    return str(uuid.uuid4())


def new_webhook_secret() -> str:
    """A deployment's webhook secret: 256 random bits as hex (any webhook form takes it as is)."""
    return secrets.token_hex(32)
