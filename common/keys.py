"""Every Redis key name the farm uses, in one place."""

PREFIX = "bf:"


def token(token_hash: str) -> str:
    """Hash: tenant, name, created_at of one API token, keyed by the token's SHA-256."""
    return f"{PREFIX}token:{token_hash}"


def deployment(deployment_id: str) -> str:
    """Hash: one deployment's fields."""
    return f"{PREFIX}deployment:{deployment_id}"


def tenant_deployments(tenant: str) -> str:
    """Sorted set: a tenant's deployment ids scored by creation time (ms)."""
    return f"{PREFIX}tenant:{tenant}:deployments"


def subdomain(name: str) -> str:
    """String: the deployment id that owns a subdomain (subdomains are unique farm-wide)."""
    return f"{PREFIX}subdomain:{name}"


def deployment_build_seq(deployment_id: str) -> str:
    """Counter: the number given to a deployment's next build."""
    return f"{PREFIX}deployment:{deployment_id}:seq"


def deployment_builds(deployment_id: str, status: str | None = None) -> str:
    """Sorted set: a deployment's build ids scored by build number, all or of one status."""
    suffix = f":{status}" if status else ""
    return f"{PREFIX}deployment:{deployment_id}:builds{suffix}"


def build(build_id: str) -> str:
    """Hash: one build's fields."""
    return f"{PREFIX}build:{build_id}"


def build_log(build_id: str) -> str:
    """Stream: a build's live log, one entry per line, entry id `{line_number}-1`."""
    return f"{PREFIX}log:{build_id}"


def archive_pending() -> str:
    """Sorted set: build ids whose log is finished but not yet archived, by finish time."""
    return f"{PREFIX}archive:pending"
