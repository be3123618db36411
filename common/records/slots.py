"""What a tenant holds of its limited kinds (common/models.py TenantLimits): uploads in flight,
log WebSockets open, deploy requests of the last minute. Each is a slot in a sorted set scored by
its expiry on the Redis clock, so that nothing a crashed API process held is counted past its
expiry: a holder renews its slot while it holds it, and gives it back when done."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from common.records import keys, scripts
from common.records.call import Call


@dataclass(frozen=True)
class Taken:
    """A slot taken, or refused: then `wait_ms` is how long until the first held slot expires."""

    ok: bool
    wait_ms: int = 0


def take_slot(tenant: str, kind: str, slot: str, limit: int, lease_ms: int) -> Call[Taken]:
    """Takes (or renews) `slot` for `lease_ms` unless the tenant holds `limit` (0: no limit)."""

    def parse(reply: list[Any]) -> Taken:
        return Taken(bool(int(reply[0])), int(reply[1]))

    return Call(
        parse, script=scripts.TAKE_SLOT, keys=[keys.tenant_slots(tenant, kind)], args=[slot, limit, lease_ms]
    )


def renew_slots(tenant: str, kind: str, slots: Collection[str], lease_ms: int) -> Call[None]:
    """Renews `slots`, held, for `lease_ms`: one round trip however many."""
    key = keys.tenant_slots(tenant, kind)
    return Call(lambda _: None, script=scripts.RENEW_SLOTS, keys=[key], args=[lease_ms, *slots])


def release_slots(tenant: str, kind: str, slots: Collection[str]) -> Call[None]:
    return Call(lambda _: None, commands=[("ZREM", keys.tenant_slots(tenant, kind), *slots)])
