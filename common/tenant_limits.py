"""A tenant's limits (common/models.py TenantLimits): what an admin set for the tenant
(`buildfarm tenant set`, straight in Redis) over the farm-wide defaults of the config. The one
module that writes and reads them; read on every request a limit guards, so that a change takes
effect without a restart."""

from __future__ import annotations

import msgspec

from common.config import Config
from common.models import LIMIT_NAMES, TenantLimits
from common.records import keys
from common.records.call import Call, pairs


def farm_defaults(config: Config) -> TenantLimits:
    """Every tenant's limits unless an admin set its own: BUILDFARM_TENANT_<LIMIT>."""
    return TenantLimits(**{name: getattr(config, f"tenant_{name}") for name in LIMIT_NAMES})


def own_limits(tenant: str) -> Call[dict[str, int]]:
    """The limits an admin set for the tenant (the others are the farm's defaults)."""

    def parse(replies: list[dict[bytes, bytes]]) -> dict[str, int]:
        own = {name.decode(): int(value) for name, value in replies[0].items()}
        return {name: value for name, value in own.items() if name in LIMIT_NAMES}

    return Call(parse, commands=[("HGETALL", keys.tenant_limits(tenant))])


def tenant_limits(tenant: str, defaults: TenantLimits) -> Call[TenantLimits]:
    """The tenant's limits in force: its own where an admin set them, else the defaults."""
    own = own_limits(tenant)
    return Call(
        lambda replies: msgspec.structs.replace(defaults, **own.parse(replies)), commands=own.commands
    )


def set_limits(tenant: str, values: dict[str, int | None]) -> Call[None]:
    """Sets some of the tenant's own limits; None puts one back to the farm's default."""
    unknown = set(values) - set(LIMIT_NAMES)
    if unknown:
        raise ValueError(f"unknown limit(s): {', '.join(sorted(unknown))}")
    chosen = {name: str(value) for name, value in values.items() if value is not None}
    reset = [name for name, value in values.items() if value is None]
    key = keys.tenant_limits(tenant)
    commands: list[tuple[object, ...]] = [("SADD", keys.TENANTS_WITH_LIMITS, tenant)]
    if chosen:
        commands.append(("HSET", key, *pairs(chosen)))
    if reset:
        commands.append(("HDEL", key, *reset))
    return Call(lambda _: None, commands=commands)


def tenants_with_limits() -> Call[list[str]]:
    """The tenants an admin set limits for, sorted."""
    return Call(
        lambda replies: sorted(tenant.decode() for tenant in replies[0]),
        commands=[("SMEMBERS", keys.TENANTS_WITH_LIMITS)],
    )
