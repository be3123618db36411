"""Every Redis key name the farm uses, in one place."""

from common.models import BuildStatus

PREFIX = "bf:"

# Set: the SHA-256 of every API token (what `buildfarm token list` walks).
TOKEN_INDEX = f"{PREFIX}tokens"
# Counter: orders deployments in their tenant's sorted set.
DEPLOYMENT_SEQ = f"{PREFIX}deployment:seq"
# Sorted set: build ids whose log is finished but not yet in the log archive, by finish time.
LOG_ARCHIVE_PENDING = f"{PREFIX}logarchive:pending"
# Sorted set: build ids whose log is in the log archive, scored by upload time (s).
LOG_ARCHIVE_DONE = f"{PREFIX}logarchive:done"
# Set: the tenants an admin set limits for (what `buildfarm tenant list` walks).
TENANTS_WITH_LIMITS = f"{PREFIX}tenants:limited"
# Sorted set: the worker processes that heartbeat, by their last heartbeat (Redis time, ms).
WORKERS = f"{PREFIX}workers"
# Sorted set: farm-wide ids of the builds that ended within the last hour, by end time (ms).
FINISHED_BUILDS = f"{PREFIX}finished"


def token(token_hash: str) -> str:
    """Hash: tenant, name, created_at of one API token, keyed by the token's SHA-256."""
    return f"{PREFIX}token:{token_hash}"


def deployment(deployment_id: str) -> str:
    """Hash: one deployment's fields."""
    return f"{PREFIX}deployment:{deployment_id}"


def tenant_deployments(tenant: str) -> str:
    """Sorted set: a tenant's deployment ids scored by creation time (ms)."""
    return f"{PREFIX}tenant:{tenant}:deployments"


def tenant_limits(tenant: str) -> str:
    """Hash: the limits an admin set for a tenant (common/tenant_limits.py), limit name → number."""
    return f"{PREFIX}tenant:{tenant}:limits"


def subdomain(name: str) -> str:
    """String: the deployment id that owns a subdomain (subdomains are unique farm-wide)."""
    return f"{PREFIX}subdomain:{name}"


def subdomain_tombstone(name: str) -> str:
    """String: the tenant a subdomain stays reserved to after its deployment was deleted (its
    images may still be pulled by that name), until an admin frees it."""
    return f"{PREFIX}subdomain-tombstone:{name}"


def deployment_secrets(deployment_id: str) -> str:
    """Hash: a deployment's build secrets, name → Fernet token (common/build_secrets.py)."""
    return f"{PREFIX}deployment:{deployment_id}:secrets"


def deployment_build_seq(deployment_id: str) -> str:
    """Counter: the number given to a deployment's next build."""
    return f"{PREFIX}deployment:{deployment_id}:seq"


def deployment_builds(deployment_id: str, status: str | None = None) -> str:
    """Sorted set: a deployment's build ids scored by build number, all or of one status."""
    suffix = f":{status}" if status else ""
    return f"{PREFIX}deployment:{deployment_id}:builds{suffix}"


def deployment_builds_by_status(deployment_id: str) -> list[str]:
    """The per-status sorted sets of a deployment, in BuildStatus order."""
    return [deployment_builds(deployment_id, status) for status in BuildStatus]


def build(build_id: str) -> str:
    """Hash: one build's fields."""
    return f"{PREFIX}build:{build_id}"


def build_log(build_id: str) -> str:
    """Stream: a build's live log, one entry per line, entry id `{line_number}-1`."""
    return f"{PREFIX}log:{build_id}"


def cleanup_lock(job: str, scope: str) -> str:
    """String: held by the one worker running a cleanup job for a scope, for one interval."""
    return f"{PREFIX}cleanup:{job}:{scope}"


def log_archive_lock(build_id: str) -> str:
    """String: held by the one worker uploading a build's log to the log archive."""
    return f"{PREFIX}logarchive:lock:{build_id}"


def active_builds(status: str) -> str:
    """Sorted set: farm-wide ids of the builds in a non-terminal status, by entry time (ms)."""
    return f"{PREFIX}active:{status}"


ACTIVE_STATUSES = (BuildStatus.PENDING, BuildStatus.BUILDING)
DEPLOYMENT_PREFIX = deployment("")
BUILD_PREFIX = build("")


def idempotency(tenant: str, deployment_id: str, key: str) -> str:
    """String: the build a deploy request with this Idempotency-Key created (24 h)."""
    return f"{PREFIX}idempotency:{tenant}:{deployment_id}:{key}"


def webhook_delivery(deployment_id: str, provider: str, delivery_id: str) -> str:
    """String: the build a push webhook delivery (GitHub or GitLab delivery id) created (24 h)."""
    return f"{PREFIX}webhook:{deployment_id}:{provider}:{delivery_id}"


def reap_marker(build_id: str, attempt: int) -> str:
    """String: set by the reaper that re-queued one expired attempt, so only one does."""
    return f"{PREFIX}reap:{build_id}:{attempt}"


def worker(worker_id: str) -> str:
    """Hash: one worker process's record (host, threads, the builds it runs), refreshed by its
    heartbeat and expiring when the heartbeats stop."""
    return f"{PREFIX}worker:{worker_id}"


WORKER_PREFIX = worker("")


def tenant_slots(tenant: str, kind: str) -> str:
    """Sorted set: what a tenant holds of one limited kind (uploads in flight, log streams open,
    deploy requests of the last minute), one member each, scored by when it expires (ms, Redis
    clock): common/records/slots.py."""
    return f"{PREFIX}tenant:{tenant}:slots:{kind}"


def tenant_build_seconds(tenant: str) -> str:
    """Hash: a tenant's build time, month (YYYY-MM, UTC, of the build's end) → seconds."""
    return f"{PREFIX}tenant:{tenant}:build-seconds"


def deployment_notifications(deployment_id: str) -> str:
    """Hash: a deployment's notification targets, id → the target as JSON, its signing secret a
    Fernet token (common/records/integrations.py)."""
    return f"{PREFIX}deployment:{deployment_id}:notifications"


def notification_deliveries(notification_id: str) -> str:
    """List: a notification target's last deliveries as JSON, newest first."""
    return f"{PREFIX}notification:{notification_id}:deliveries"


def deployment_commit_status(deployment_id: str) -> str:
    """String: where a deployment's builds report their commit status, as JSON; its token a
    Fernet token (common/records/integrations.py)."""
    return f"{PREFIX}deployment:{deployment_id}:commit-status"


def commit_status_sent(build_id: str) -> str:
    """String: the furthest state of a build reported as its commit status (a rank), so a late
    retry of an earlier state does not overwrite a later one."""
    return f"{PREFIX}build:{build_id}:commit-status"


# Sorted set: the tenants with pending builds, scored by their turn (the fair order of
# common/records/scripts.py PICK: the lowest score is served next).
TENANT_RING = f"{PREFIX}fair:tenants"
# Counter: the turn given to the tenant served last.
TENANT_TURN = f"{PREFIX}fair:turn"


def tenant_builds(tenant: str, status: str) -> str:
    """Sorted set: a tenant's pending or building build ids, by entry time (ms)."""
    return f"{PREFIX}tenant:{tenant}:builds:{status}"
