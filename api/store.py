"""The API's view of Redis: tokens, deployments and build records (async, one round trip each
where it matters)."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass

import redis.asyncio as aioredis

from common import keys
from common.models import (
    DEPLOYMENT_CREATED,
    Build,
    BuildStatus,
    Deployment,
    utc_now,
)
from common.tokens import token_hash
from common.transitions import (
    TRANSITION_LUA,
    TransitionResult,
    parse_transition,
    transition_call,
)

DEPLOYMENT_SEQ = f"{keys.PREFIX}deployment:seq"
IDEMPOTENCY_TTL_S = 24 * 3600

# Creates a build only if its deployment still exists, numbering it in the same step.
_CREATE_BUILD_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local n = redis.call('INCR', KEYS[2])
redis.call('HSET', KEYS[4], 'number', n, unpack(ARGV, 3))
redis.call('ZADD', KEYS[3], n, ARGV[1])
redis.call('ZADD', KEYS[3] .. ':pending', n, ARGV[1])
local now = redis.call('TIME')
redis.call('ZADD', KEYS[5], now[1] * 1000 + math.floor(now[2] / 1000), ARGV[1])
redis.call('HSET', KEYS[1], 'latest_build_id', ARGV[1], 'updated_at', ARGV[2])
return n
"""

# Deletes a deployment's record only while none of its builds is pending or building.
_DELETE_DEPLOYMENT_LUA = """
local active = redis.call('ZCARD', KEYS[2] .. ':pending') + redis.call('ZCARD', KEYS[2] .. ':building')
if active > 0 then return active end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if redis.call('GET', KEYS[4]) == ARGV[1] then redis.call('DEL', KEYS[4]) end
return 0
"""

# Sets hash fields only on a record that still exists (a concurrent delete must not leave a stub).
_HSET_IF_EXISTS_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant a token belongs to, and the token's name."""

    tenant: str
    token_name: str


class SubdomainTaken(Exception):
    """Raised when a deployment is created with a subdomain another deployment owns."""


class ActiveBuilds(Exception):
    """Raised when a deployment cannot be deleted because builds of it are queued or running."""


class RecordStore:
    def __init__(self, redis: aioredis.Redis) -> None:
        self.redis = redis
        self._transition = redis.register_script(TRANSITION_LUA)
        self._create_build = redis.register_script(_CREATE_BUILD_LUA)
        self._delete_deployment = redis.register_script(_DELETE_DEPLOYMENT_LUA)
        self._hset_if_exists = redis.register_script(_HSET_IF_EXISTS_LUA)

    # Tokens

    async def authenticate(self, token: str) -> Principal | None:
        digest = token_hash(token)
        record = await self.redis.hgetall(keys.token(digest))
        if not record or not hmac.compare_digest(record.get(b"hash", b"").decode(), digest):
            return None
        return Principal(record[b"tenant"].decode(), record[b"name"].decode())

    # Deployments

    async def create_deployment(self, deployment: Deployment) -> Deployment:
        claimed = await self.redis.set(keys.subdomain(deployment.subdomain), deployment.id, nx=True)
        if not claimed:
            raise SubdomainTaken(deployment.subdomain)
        seq = await self.redis.incr(DEPLOYMENT_SEQ)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.deployment(deployment.id), mapping=deployment.to_redis())
            pipe.zadd(keys.tenant_deployments(deployment.tenant), {deployment.id: seq})
            await pipe.execute()
        return deployment

    async def get_deployment(self, tenant: str, deployment_id: str) -> Deployment | None:
        deployment = await self.get_any_deployment(deployment_id)
        # Another tenant's deployment is answered exactly like a missing one.
        return deployment if deployment is not None and deployment.tenant == tenant else None

    async def get_any_deployment(self, deployment_id: str) -> Deployment | None:
        """A deployment whatever its tenant: for webhooks, which prove themselves by its secret."""
        raw = await self.redis.hgetall(keys.deployment(deployment_id))
        return Deployment.from_redis(raw) if raw else None

    async def set_webhook_secret(self, deployment_id: str, secret: str) -> bool:
        """Replaces a deployment's webhook secret; False if the deployment is gone."""
        fields = ["webhook_secret", secret, "updated_at", utc_now()]
        return bool(await self._hset_if_exists(keys=[keys.deployment(deployment_id)], args=fields))

    async def list_deployments(
        self, tenant: str, limit: int, before: int | None
    ) -> tuple[list[tuple[Deployment, str]], int | None]:
        ids, next_cursor = await self._page(keys.tenant_deployments(tenant), limit, before)
        async with self.redis.pipeline(transaction=False) as pipe:
            for deployment_id in ids:
                pipe.hgetall(keys.deployment(deployment_id))
            raws = await pipe.execute()
        deployments = [Deployment.from_redis(raw) for raw in raws if raw]
        statuses = await self.deployment_statuses(deployments)
        return list(zip(deployments, statuses, strict=True)), next_cursor

    async def deployment_statuses(self, deployments: list[Deployment]) -> list[str]:
        """Each deployment's status: its latest build's status, or "created"."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for deployment in deployments:
                pipe.hget(keys.build(deployment.latest_build_id or "-"), "status")
            statuses = await pipe.execute()
        return [s.decode() if s else DEPLOYMENT_CREATED for s in statuses]

    async def delete_deployment(self, deployment: Deployment) -> None:
        base = keys.deployment_builds(deployment.id)
        active = await self._delete_deployment(
            keys=[
                keys.deployment(deployment.id),
                base,
                keys.tenant_deployments(deployment.tenant),
                keys.subdomain(deployment.subdomain),
            ],
            args=[deployment.id],
        )
        if active:
            raise ActiveBuilds(active)
        # The deployment is gone, so no new build can join; clear its builds in pages.
        while build_ids := await self.redis.zrange(base, 0, 499):
            async with self.redis.pipeline(transaction=False) as pipe:
                for build_id in build_ids:
                    pipe.delete(keys.build(build_id.decode()), keys.build_log(build_id.decode()))
                pipe.zrem(base, *build_ids)
                await pipe.execute()
        statuses = [keys.deployment_builds(deployment.id, s.value) for s in BuildStatus]
        await self.redis.delete(*statuses, keys.deployment_build_seq(deployment.id))

    async def record_upload(self, deployment_id: str, sha256: str, size: int, has_dockerfile: bool) -> None:
        now = utc_now()
        await self.redis.hset(
            keys.deployment(deployment_id),
            mapping={
                "archive_sha256": sha256,
                "archive_size": str(size),
                "archive_has_dockerfile": "1" if has_dockerfile else "0",
                "archive_uploaded_at": now,
                "updated_at": now,
            },
        )

    # Builds

    async def create_build(self, build: Build) -> Build | None:
        """Stores a new pending build; None if its deployment was deleted meanwhile."""
        fields = build.to_redis()
        del fields["number"]
        flat = [item for pair in fields.items() for item in pair]
        number = await self._create_build(
            keys=[
                keys.deployment(build.deployment_id),
                keys.deployment_build_seq(build.deployment_id),
                keys.deployment_builds(build.deployment_id),
                keys.build(build.id),
                keys.active_builds("pending"),
            ],
            args=[build.id, build.created_at, *flat],
        )
        if not number:
            return None
        build.number = int(number)
        return build

    async def get_build(self, deployment_id: str, build_id: str) -> Build | None:
        raw = await self.redis.hgetall(keys.build(build_id))
        if not raw:
            return None
        build = Build.from_redis(raw)
        return build if build.deployment_id == deployment_id else None

    async def list_builds(
        self, deployment_id: str, status: str | None, limit: int, before: int | None
    ) -> tuple[list[Build], int | None]:
        index = keys.deployment_builds(deployment_id, status)
        ids, next_cursor = await self._page(index, limit, before)
        async with self.redis.pipeline(transaction=False) as pipe:
            for build_id in ids:
                pipe.hgetall(keys.build(build_id))
            raws = await pipe.execute()
        return [Build.from_redis(raw) for raw in raws if raw], next_cursor

    async def transition(
        self,
        build: Build,
        to: BuildStatus,
        fields: dict[str, str] | None = None,
        expected: frozenset[BuildStatus] | None = None,
    ) -> TransitionResult:
        call_keys, argv = transition_call(build.id, build.deployment_id, to, fields, expected=expected)
        return parse_transition(await self._transition(keys=call_keys, args=argv))

    async def claim_idempotency_key(self, deployment: Deployment, key: str, build_id: str) -> str | None:
        """Records `build_id` for the key; returns the build id recorded earlier, if any."""
        return await self._claim_once(keys.idempotency(deployment.tenant, deployment.id, key), build_id)

    async def claim_webhook_delivery(
        self, deployment: Deployment, provider: str, delivery_id: str, build_id: str
    ) -> str | None:
        """Like claim_idempotency_key, for a webhook delivery id: a redelivery gets the same build."""
        name = keys.webhook_delivery(deployment.id, provider, delivery_id)
        return await self._claim_once(name, build_id)

    async def release_webhook_delivery(self, deployment: Deployment, provider: str, delivery_id: str) -> None:
        """Forgets a delivery whose build could not be queued, so that a redelivery tries again."""
        await self.redis.delete(keys.webhook_delivery(deployment.id, provider, delivery_id))

    async def _claim_once(self, name: str, build_id: str) -> str | None:
        if await self.redis.set(name, build_id, nx=True, ex=IDEMPOTENCY_TTL_S):
            return None
        earlier = await self.redis.get(name)
        return earlier.decode() if earlier else None

    async def supersede_queued(self, newer: Build) -> None:
        """Cancels the builds of the deployment still waiting in the queue behind `newer`."""
        index = keys.deployment_builds(newer.deployment_id, BuildStatus.PENDING)
        for raw in await self.redis.zrangebyscore(index, "-inf", f"({newer.number}"):
            older = await self.get_build(newer.deployment_id, raw.decode())
            if older is not None:
                fields = {"finished_at": utc_now(), "error": f"Superseded by build #{newer.number}"}
                await self.transition(
                    older, BuildStatus.CANCELLED, fields, expected=frozenset({BuildStatus.PENDING})
                )

    async def request_cancel(self, build: Build, requested_by: str) -> None:
        """Flags a running build; its worker sees the flag within a second and stops it."""
        await self.redis.hset(keys.build(build.id), "cancel_requested_by", requested_by)

    async def _page(self, index: str, limit: int, before: int | None) -> tuple[list[str], int | None]:
        """One page of a sorted set, newest (highest score) first, below the cursor score."""
        top = f"({before}" if before is not None else "+inf"
        rows = await self.redis.zrevrangebyscore(index, top, "-inf", start=0, num=limit + 1, withscores=True)
        next_cursor = int(rows[limit - 1][1]) if len(rows) > limit else None
        return [member.decode() for member, _ in rows[:limit]], next_cursor


def new_id() -> str:
    return str(uuid.uuid4())


def new_webhook_secret() -> str:
    """A deployment's webhook secret: 256 random bits as hex (any webhook form takes it as is)."""
    return secrets.token_hex(32)
