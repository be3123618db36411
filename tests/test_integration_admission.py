"""The slots an API process holds (api/admission.py) on real Redis: renewed while held, all of a
tenant's kind in one round trip, and given back together when they end together (thousands of
log WebSockets end with their build)."""

import asyncio
import uuid
from collections import Counter

from api import admission
from api.admission import LOG_STREAMS, TenantAdmission
from api.store import RecordStore
from common.config import Config
from common.records import keys
from common.redis_clients import async_redis

HELD = 50


class CountingStore(RecordStore):
    """The API's store, counting the round trips it makes: scripts, and commands by name."""

    def __init__(self, client) -> None:
        super().__init__(client)
        self.round_trips: Counter[str] = Counter()

    def _request(self, call):
        self.round_trips["script" if call.script else call.commands[0][0]] += 1
        return super()._request(call)


def test_held_slots_are_renewed_together_and_given_back_together(config, redis_client, monkeypatch):
    # Given leases of 1.5 s (renewed every 0.5 s) and a tenant without limits of its own
    monkeypatch.setattr(admission, "LEASE_MS", 1500)
    tenant = f"admission-{uuid.uuid4().hex[:8]}"
    key = keys.tenant_slots(tenant, LOG_STREAMS)

    async def scenario() -> tuple[int, int, int, int]:
        client = async_redis(config.redis_url)
        store = CountingStore(client)
        tenants = TenantAdmission(Config.from_env(), store)
        end = asyncio.Event()

        async def stream() -> None:
            async with tenants.held(tenant, LOG_STREAMS):
                await end.wait()

        # When a process holds 50 log streams for three leases
        streams = [asyncio.create_task(stream()) for _ in range(HELD)]
        # (counted once all are taken: on a fresh Redis, taking them took over 0.2 s)
        async with asyncio.timeout(10):
            while redis_client.zcard(key) < HELD:
                await asyncio.sleep(0.01)
        taken = store.round_trips["script"]
        await asyncio.sleep(4.5)
        held_after_leases = redis_client.zcard(key)
        renewals = store.round_trips["script"] - taken
        # And they all end at once
        end.set()
        await asyncio.gather(*streams)
        removals = store.round_trips["ZREM"]
        await client.aclose()
        return held_after_leases, renewals, removals, redis_client.zcard(key)

    held, renewals, removals, left = asyncio.run(scenario())
    # Then every slot outlived three leases, renewed in one round trip per half second
    assert held == HELD
    assert renewals <= 10, renewals
    # And they were given back in one round trip, all of them
    assert (removals, left) == (1, 0)
