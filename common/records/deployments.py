"""The operations on deployment records, written once: create, read, list, change, delete,
and the one-shot keys that make a deploy request or a webhook delivery create one build."""

from __future__ import annotations

from typing import Any

from common.models import DEPLOYMENT_CREATED, BuildStatus, Deployment, utc_now
from common.records import fields, keys, scripts
from common.records.builds import page_args, split_page
from common.records.call import Call, Steps, first, flat_hash, pairs, text
from common.records.integrations import forget_integrations

IDEMPOTENCY_TTL_S = 24 * 3600
# Builds deleted per round trip when a deployment goes.
DELETE_BATCH = 500


class SubdomainTaken(Exception):
    """Raised when a deployment is created with a subdomain another deployment owns."""


class SubdomainReserved(Exception):
    """Raised when a deployment is created with a subdomain that a deleted deployment of another
    tenant left reserved (a tombstone)."""


class ActiveBuilds(Exception):
    """Raised when a deployment cannot be deleted because builds of it are queued or running."""


def create_deployment(deployment: Deployment) -> Call[Deployment]:
    def parse(created: int) -> Deployment:
        if created == -1:
            raise SubdomainReserved(deployment.subdomain)
        if not created:
            raise SubdomainTaken(deployment.subdomain)
        return deployment

    return Call(
        parse,
        script=scripts.CREATE_DEPLOYMENT,
        keys=[
            keys.subdomain(deployment.subdomain),
            keys.DEPLOYMENT_SEQ,
            keys.deployment(deployment.id),
            keys.tenant_deployments(deployment.tenant),
            keys.subdomain_tombstone(deployment.subdomain),
        ],
        args=[deployment.id, deployment.tenant, *pairs(deployment.to_redis())],
    )


def get_any_deployment(deployment_id: str) -> Call[Deployment | None]:
    """A deployment whatever its tenant: for webhooks, which prove themselves by its secret."""
    return Call(
        lambda replies: Deployment.from_redis(replies[0]),
        commands=[("HGETALL", keys.deployment(deployment_id))],
    )


def get_deployment(tenant: str, deployment_id: str) -> Steps[Deployment | None]:
    """The tenant's deployment; another tenant's is answered exactly like a missing one."""
    deployment = yield get_any_deployment(deployment_id)
    return deployment if deployment is not None and deployment.tenant == tenant else None


def set_webhook_secret(deployment_id: str, secret: str) -> Call[bool]:
    """Replaces a deployment's webhook secret; False if the deployment is gone."""
    return Call(
        bool,
        script=scripts.HSET_IF_EXISTS,
        keys=[keys.deployment(deployment_id)],
        args=[fields.WEBHOOK_SECRET, secret, fields.UPDATED_AT, utc_now()],
    )


def update_deployment(deployment_id: str, changes: dict[str, str]) -> Call[bool]:
    """Replaces some of a deployment's fields as stored (an empty value reads back as absent);
    False if the deployment is gone."""
    return Call(
        bool, script=scripts.HSET_IF_EXISTS, keys=[keys.deployment(deployment_id)], args=pairs(changes)
    )


def record_upload(deployment_id: str, sha256: str, size: int, has_dockerfile: bool) -> Call[None]:
    now = utc_now()
    values = {
        fields.ARCHIVE_SHA256: sha256,
        fields.ARCHIVE_SIZE: str(size),
        fields.ARCHIVE_HAS_DOCKERFILE: "1" if has_dockerfile else "0",
        fields.ARCHIVE_UPLOADED_AT: now,
        fields.UPDATED_AT: now,
    }
    return Call(lambda _: None, commands=[("HSET", keys.deployment(deployment_id), *pairs(values))])


def list_deployments(
    tenant: str, limit: int, before: int | None
) -> Call[tuple[list[tuple[Deployment, str]], int | None]]:
    """One page of a tenant's deployments, newest first below the cursor, each with its
    status (its latest build's), in one round trip."""

    def parse(reply: list[Any]) -> tuple[list[tuple[Deployment, str]], int | None]:
        rows, cursor = split_page(reply)
        hashes_and_statuses = zip(rows[2::4], rows[3::4], strict=True)
        records = [(Deployment.from_redis(flat_hash(raw)), status) for raw, status in hashes_and_statuses]
        found = [(record, status.decode() or DEPLOYMENT_CREATED) for record, status in records if record]
        return found, cursor

    return Call(
        parse,
        script=scripts.PAGE,
        keys=[keys.tenant_deployments(tenant)],
        args=[*page_args(before, limit), keys.DEPLOYMENT_PREFIX, keys.BUILD_PREFIX, ""],
    )


def deployment_statuses(deployments: list[Deployment]) -> Call[list[str]]:
    """Each deployment's status: its latest build's status, or "created"."""
    return Call(
        lambda replies: [text(status) or DEPLOYMENT_CREATED for status in replies],
        commands=[("HGET", keys.build(d.latest_build_id or "-"), fields.STATUS) for d in deployments],
    )


def delete_deployment(deployment: Deployment) -> Steps[None]:
    """Deletes the deployment with its secrets, builds, logs and integrations, unless builds of it are active;
    its subdomain stays reserved to its tenant (common/records/subdomains.py)."""
    by_status = keys.deployment_builds_by_status(deployment.id)
    active = yield Call(
        int,
        script=scripts.DELETE_DEPLOYMENT,
        keys=[
            keys.deployment(deployment.id),
            keys.deployment_builds(deployment.id, BuildStatus.PENDING),
            keys.deployment_builds(deployment.id, BuildStatus.BUILDING),
            keys.tenant_deployments(deployment.tenant),
            keys.subdomain(deployment.subdomain),
            keys.deployment_secrets(deployment.id),
            keys.subdomain_tombstone(deployment.subdomain),
        ],
        args=[deployment.id, deployment.tenant],
    )
    if active:
        raise ActiveBuilds(active)
    # The deployment is gone, so no new build can join; clear its builds in batches.
    index = keys.deployment_builds(deployment.id)
    while build_ids := (yield Call(first, commands=[("ZRANGE", index, 0, DELETE_BATCH - 1)])):
        doomed = [
            name for raw in build_ids for name in (keys.build(raw.decode()), keys.build_log(raw.decode()))
        ]
        yield Call(lambda _: None, commands=[("DEL", *doomed), ("ZREM", index, *build_ids)])
    yield Call(lambda _: None, commands=[("DEL", *by_status, keys.deployment_build_seq(deployment.id))])
    yield from forget_integrations(deployment.id)


def claim_once(name: str, build_id: str) -> Call[str | None]:
    """Records `build_id` under a one-shot key (a deploy's Idempotency-Key, a webhook delivery;
    24 h); returns the build id recorded earlier, if any: a repeated request gets that build."""
    return Call(
        lambda replies: None if replies[0] else text(replies[1]),
        commands=[("SET", name, build_id, "NX", "EX", IDEMPOTENCY_TTL_S), ("GET", name)],
    )


def forget(name: str) -> Call[None]:
    """Drops a one-shot key whose build could not be queued, so that a retry tries again."""
    return Call(lambda _: None, commands=[("DEL", name)])
