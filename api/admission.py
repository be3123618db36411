"""A tenant's requests against its limits (common/tenant_limits.py, read on every request so that
an admin's change needs no restart): uploads in flight and log WebSockets open are held as slots
(common/records/slots.py) for as long as they last, deploy requests (deploys, retries, push
webhooks) take a slot for a minute. Past a limit the request gets 429 with Retry-After.

An API process renews every slot it holds in one round trip per tenant and kind, and gives back
the slots released in the same event loop iteration together: thousands of log WebSockets ending
with their build cost a few round trips, not one each ahead of every other request's."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from redis.exceptions import RedisError

from api.errors import too_many_requests
from api.store import RecordStore, new_id
from common.config import Config
from common.models import TenantLimits
from common.tenant_limits import farm_defaults, tenant_limits

logger = logging.getLogger("buildfarm.api")

# The kinds held as long as they last, named by their limit: what the 429 says they are.
UPLOADS = "max_uploads"
LOG_STREAMS = "max_log_streams"
HELD = {UPLOADS: "source uploads in flight", LOG_STREAMS: "log WebSockets open"}
DEPLOYS = "deploys_per_minute"
MINUTE_MS = 60_000
# A held slot is renewed every third of its lease while it is held: what an API process that
# died held is counted no longer than this.
LEASE_MS = 60_000
# Retry-After when every slot is held: they end when their uploads or streams end, not by a clock.
HELD_RETRY_S = 10


class TenantAdmission:
    def __init__(self, config: Config, store: RecordStore) -> None:
        self.config = config
        self.store = store
        # The slots this process holds, by tenant and kind; the task renewing them while any.
        self._held: dict[tuple[str, str], set[str]] = {}
        self._renewal: asyncio.Task | None = None
        # The slots being given back, by tenant and kind, and the task that gives them back.
        self._returns: dict[tuple[str, str], tuple[set[str], asyncio.Task]] = {}

    async def limits(self, tenant: str) -> TenantLimits:
        return await self.store.run(tenant_limits(tenant, farm_defaults(self.config)))

    async def deploy_request(self, tenant: str) -> TenantLimits:
        """Counts a request that submits a build; 429 past the tenant's deploys per minute. The
        limits it read, for the rest of the request."""
        limits = await self.limits(tenant)
        limit = limits.deploys_per_minute
        taken = await self.store.take_slot(tenant, DEPLOYS, new_id(), limit, MINUTE_MS)
        if not taken.ok:
            retry_s = max(1, math.ceil(taken.wait_ms / 1000))
            raise too_many_requests(
                f"Too many deploy requests: this tenant may make {limit} a minute "
                f"(its limit {DEPLOYS}); try again in {retry_s} s",
                retry_s,
            )
        return limits

    @asynccontextmanager
    async def held(self, tenant: str, kind: str) -> AsyncIterator[None]:
        """Holds one of the tenant's `kind` (UPLOADS, LOG_STREAMS) for the block; 429 if it holds
        as many as its limit already."""
        limit, slot = getattr(await self.limits(tenant), kind), new_id()
        taken = await self.store.take_slot(tenant, kind, slot, limit, LEASE_MS)
        if not taken.ok:
            retry_s = max(1, min(HELD_RETRY_S, math.ceil(taken.wait_ms / 1000)))
            raise too_many_requests(
                f"Too many {HELD[kind]}: this tenant may have {limit} at once (its limit {kind}); "
                f"try again when one ends",
                retry_s,
            )
        held = self._held.setdefault((tenant, kind), set())
        held.add(slot)
        if self._renewal is None:
            self._renewal = asyncio.create_task(self._renew_held())
        try:
            yield
        finally:
            held.discard(slot)
            if not held and self._held.get((tenant, kind)) is held:
                del self._held[(tenant, kind)]
            try:
                await self._give_back(tenant, kind, slot)
            except RedisError as e:
                logger.warning(
                    "a slot of %s not given back (it expires within %s s): %s", kind, LEASE_MS // 1000, e
                )

    async def _renew_held(self) -> None:
        """Every third of a lease, renews the slots this process holds; ends when it holds none."""
        while self._held:
            await asyncio.sleep(LEASE_MS / 3000)
            for (tenant, kind), slots in list(self._held.items()):
                try:
                    await self.store.renew_slots(tenant, kind, list(slots), LEASE_MS)
                except RedisError as e:
                    logger.warning("slots of %s not renewed (tried again later): %s", kind, e)
        self._renewal = None

    async def _give_back(self, tenant: str, kind: str, slot: str) -> None:
        """Gives a slot back, with the others of its tenant and kind given back meanwhile."""
        returning = self._returns.get((tenant, kind))
        if returning is None:
            returning = (set(), asyncio.create_task(self._return(tenant, kind)))
            self._returns[(tenant, kind)] = returning
        returning[0].add(slot)
        # Shielded: the slots of others wait on the same round trip.
        await asyncio.shield(returning[1])

    async def _return(self, tenant: str, kind: str) -> None:
        await asyncio.sleep(0)  # the slots given back in this loop iteration join
        slots, _ = self._returns.pop((tenant, kind))
        await self.store.release_slots(tenant, kind, slots)
