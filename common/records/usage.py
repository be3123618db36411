"""A tenant's use of the farm: its builds pending and building now, and its build time by month.

Build time is accrued once per build, when the build ends (worker/pipeline.py `conclude`, the one
path that ends a build that ran, the reaper's included): from its first start (`started_at`) to
its end (`finished_at`), takeovers and waits between attempts included, to the month (UTC) it
ended in. A build that never started (cancelled or expired while pending) costs nothing."""

from __future__ import annotations

from typing import Any

from common.models import BuildStatus
from common.records import keys, scripts
from common.records.builds import TenantCounts
from common.records.call import Call


def active_by_tenant() -> Call[dict[str, TenantCounts]]:
    """Every tenant's running and queued builds (the per-tenant series of /metrics); a tenant
    with none is absent. One Lua call that reads every active build of the farm (O(active
    builds)); one tenant's counts are builds.tenant_counts, O(1)."""
    statuses = keys.ACTIVE_STATUSES

    def parse(reply: list[Any]) -> dict[str, TenantCounts]:
        width = 1 + len(statuses)
        found = {}
        for at in range(0, len(reply), width):
            counts = dict(zip(statuses, (int(n) for n in reply[at + 1 : at + width]), strict=True))
            running, queued = counts[BuildStatus.BUILDING], counts[BuildStatus.PENDING]
            found[reply[at].decode()] = TenantCounts(running, queued)
        return found

    return Call(
        parse,
        script=scripts.ACTIVE_BY_TENANT,
        keys=[keys.active_builds(status) for status in statuses],
        args=[keys.BUILD_PREFIX],
    )


def month_of(timestamp: str) -> str:
    """YYYY-MM of an RFC 3339 UTC time (`2026-12-01T22:18:26.123Z` → `2026-12`)."""
    return timestamp[:7]


def accrue_build_time(tenant: str, ended_at: str, seconds: float) -> Call[None]:
    """Adds an ended build's time to its tenant's month (that of `ended_at`)."""
    key = keys.tenant_build_seconds(tenant)
    return Call(lambda _: None, commands=[("HINCRBYFLOAT", key, month_of(ended_at), f"{seconds:.3f}")])


def build_seconds(tenant: str, month: str) -> Call[float]:
    """The tenant's build time in `month` (YYYY-MM)."""
    key = keys.tenant_build_seconds(tenant)
    return Call(lambda replies: float(replies[0] or 0), commands=[("HGET", key, month)])
