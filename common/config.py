"""Settings of the farm, read from the environment, with defaults that work locally."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from urllib.parse import parse_qs, urlencode, urlsplit

from common.outbound import Network, parse_networks

# Redis servers have 16 databases unless configured otherwise.
LAST_DATABASE = 15
BUILDKIT, CLASSIC = "buildkit", "classic"
BUILDERS = (BUILDKIT, CLASSIC)
# Room for a line's longest character (4 bytes in UTF-8) many times over: a piece always holds text.
MIN_LOG_LINE_BYTES = 64
# A worker that missed this many heartbeats is shown stale (GET /farm), until its record expires.
STALE_AFTER_HEARTBEATS = 3


class ConfigError(ValueError):
    """Raised when an environment variable holds a value the farm cannot use."""


@dataclass(frozen=True)
class Config:
    """Every tunable of the farm; `from_env` maps field `x_y` to `BUILDFARM_X_Y`."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    # Dramatiq's queue; empty: the next database of the same server (never the records' one).
    broker_url: str = ""
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "buildfarm"
    s3_secret_key: str = "buildfarm-secret"
    s3_secure: bool = False
    s3_region: str = "us-east-1"
    logs_bucket: str = "build-logs"
    sources_bucket: str = "build-sources"
    registry: str = "localhost:5000"
    # The registry's login, held by the workers only (push, cache import, base images of this
    # registry); empty: the registry takes anonymous requests.
    registry_username: str = ""
    registry_password: str = field(default="", repr=False)
    # Set by deploy/ (compose, k8s): the API and workers refuse to start with the built-in S3 keys
    # or a Redis without a password, and workers without a registry login (common/credentials.py).
    require_strong_credentials: bool = False
    docker_host: str = "unix:///var/run/docker.sock"
    queue_name: str = "builds"
    # Request and upload limits.
    max_json_bytes: int = 64 * 1024
    max_upload_bytes: int = 512 * 1024 * 1024
    max_dockerfile_bytes: int = 256 * 1024
    # Extraction caps for uploaded archives.
    max_archive_entries: int = 50_000
    max_extracted_bytes: int = 4 * 1024 * 1024 * 1024
    # Builds: BuildKit through the docker CLI at docker_cli (the 20.10 CLI of Debian's docker.io;
    # a CLI without buildx refuses BuildKit), or docker-py's classic builder.
    builder: str = "buildkit"
    docker_cli: str = "/usr/bin/docker"
    build_timeout_s: int = 30 * 60
    git_timeout_s: int = 300
    allowed_git_schemes: str = "https,http"
    # Address ranges (comma-separated CIDRs) a tenant's git URL may reach although they are not
    # public, e.g. an internal git server: common/outbound.py refuses the others.
    outbound_allow: str = ""
    build_memory_bytes: int = 2 * 1024 * 1024 * 1024
    build_cpu_shares: int = 1024
    build_shm_bytes: int = 64 * 1024 * 1024
    # Per RUN step (worker/step_guard.py): processes, CPUs (a quota, not a weight), bytes the
    # step writes; the engine's BuildKit steps together: processes (the host's pid_max is finite).
    build_pids: int = 1024
    build_cpus: float = 1.0
    build_disk_bytes: int = 10 * 1024 * 1024 * 1024
    engine_build_pids: int = 8192
    # A worker with less free space on the engine's data root or its scratch folder's
    # filesystem takes no new build (worker/disk_space.py).
    min_free_disk_bytes: int = 5 * 1024 * 1024 * 1024
    # Reliability: leases, takeover, queue deadline, shutdown.
    lease_ttl_s: float = 30.0
    reaper_interval_s: float = 5.0
    max_attempts: int = 3
    queue_deadline_s: int = 24 * 3600
    worker_grace_s: float = 60.0
    # Faults of the farm's own parts are retried for this long before the build fails
    # (worker/infra_retry.py): pushing a built image to the registry, fetching a source from S3.
    push_retry_s: float = 120.0
    source_retry_s: float = 120.0
    # An engine that went away during a build is waited for this long, then the build is handed
    # back (attempt + 1); a part not reached within its bound hands the build back too.
    engine_retry_s: float = 120.0
    one_build_per_deployment: bool = True
    # Each tenant's limits unless an admin set its own (common/tenant_limits.py); 0: no limit.
    tenant_max_running: int = 0
    tenant_max_queued: int = 1000
    tenant_max_uploads: int = 8
    tenant_max_log_streams: int = 1000
    tenant_deploys_per_minute: int = 600
    # Free build slots go to the tenants in turn (common/records/scripts.py PICK); false: each
    # queue message runs its own build, first come first served (the baseline of bench/fairness.py).
    fair_scheduling: bool = True
    # Cleanup jobs: log retention and Docker pruning.
    log_retention_days: int = 30
    cleanup_interval_s: float = 3600.0
    docker_disk_budget_bytes: int = 20 * 1024 * 1024 * 1024
    # Observability: each worker host serves its metrics here (port 0: off).
    metrics_port: int = 9191
    metrics_host: str = "0.0.0.0"
    # When set, every /metrics endpoint (API and workers) wants `Authorization: Bearer <token>`.
    metrics_token: str = field(default="", repr=False)
    # The Fernet key that encrypts build secrets at rest (common/build_secrets.py); empty: the
    # farm takes no secrets. `make run` generates one into .local/.
    secrets_key: str = field(default="", repr=False)
    # Logs. The cap is in bytes of Redis memory (common/logformat.py entry_cost); longer lines are
    # cut into pieces of at most log_max_line_bytes.
    log_max_bytes: int = 64 * 1024 * 1024
    log_max_line_bytes: int = 64 * 1024
    log_batch_lines: int = 500
    log_flush_interval_s: float = 0.02
    log_archive_retry_interval_s: float = 5.0
    # The registry of workers (GET /farm): each worker process rewrites its record this often;
    # a record not rewritten for 3 beats is shown stale, and expires after worker_expiry_s.
    worker_heartbeat_s: float = 5.0
    worker_expiry_s: float = 60.0
    # Integrations (worker/notifications.py, worker/commit_status.py): their Dramatiq queue, which
    # every worker consumes beside the builds'; the dashboard's public address, from which a commit
    # status links to its build's page (empty: no link); each outbound request's time bound, and
    # the retries of a delivery or status report (Dramatiq's backoff, from this minimum, doubling).
    integrations_queue: str = "integrations"
    public_url: str = ""
    integration_timeout_s: float = 10.0
    integration_retries: int = 8
    integration_backoff_ms: int = 5000
    # What a log WebSocket may fall behind its build's live log (the bytes its connection has not
    # sent, or text plus 64 bytes a line queued) before it is closed with 1013 (api/logfanout.py).
    log_follower_buffer_bytes: int = 8 * 1024 * 1024

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Config:
        environ = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for setting in fields(cls):
            name = "DOCKER_HOST" if setting.name == "docker_host" else f"BUILDFARM_{setting.name.upper()}"
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            values[setting.name] = _parse(name, raw, type(setting.default))
        return cls(**values)

    def __post_init__(self) -> None:
        self.outbound_networks  # noqa: B018 (a bad range stops the process at start)
        if self.log_max_line_bytes < MIN_LOG_LINE_BYTES:
            raise ConfigError(f"BUILDFARM_LOG_MAX_LINE_BYTES must be at least {MIN_LOG_LINE_BYTES}")
        for name in ("build_pids", "build_cpus", "engine_build_pids"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"BUILDFARM_{name.upper()} must be above 0")
        if not 0 < STALE_AFTER_HEARTBEATS * self.worker_heartbeat_s < self.worker_expiry_s:
            raise ConfigError(
                f"BUILDFARM_WORKER_EXPIRY_S must be more than {STALE_AFTER_HEARTBEATS} times "
                "BUILDFARM_WORKER_HEARTBEAT_S, which must be above 0"
            )
        if self.builder not in BUILDERS:
            raise ConfigError(f"BUILDFARM_BUILDER must be one of {', '.join(BUILDERS)}, not {self.builder!r}")
        if _database(self.queue_redis_url) == _database(self.redis_url):
            raise ConfigError(
                "BUILDFARM_BROKER_URL must name another Redis database than BUILDFARM_REDIS_URL "
                "(Dramatiq's maintenance scans its whole database with KEYS)"
            )

    @property
    def queue_redis_url(self) -> str:
        """Where Dramatiq's queue lives: BUILDFARM_BROKER_URL, or the records' server, next database."""
        if self.broker_url:
            return self.broker_url
        parts = urlsplit(self.redis_url)
        _, db = _database(self.redis_url)
        if db >= LAST_DATABASE:
            raise ConfigError(
                f"BUILDFARM_REDIS_URL uses database {db}, the last: set BUILDFARM_BROKER_URL for the queue"
            )
        query = parse_qs(parts.query)
        path = f"/{db + 1}"
        if "db" in query or parts.scheme == "unix":
            query["db"], path = [str(db + 1)], parts.path
        tail = f"?{urlencode(query, doseq=True)}" if query else ""
        return f"{parts.scheme}://{parts.netloc}{path}{tail}"

    @property
    def outbound_networks(self) -> tuple[Network, ...]:
        try:
            return parse_networks(self.outbound_allow)
        except ValueError as e:
            raise ConfigError(f"BUILDFARM_OUTBOUND_ALLOW: {e}") from None

    @property
    def git_schemes(self) -> frozenset[str]:
        return frozenset(s.strip().lower() for s in self.allowed_git_schemes.split(",") if s.strip())


def _database(url: str) -> tuple[str, int]:
    """The server (scheme and address) and the database number a Redis URL names."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    unix = parts.scheme == "unix"
    raw = query["db"][0] if "db" in query else "0" if unix else parts.path.strip("/") or "0"
    try:
        db = int(raw)
    except ValueError:
        raise ConfigError(f"{url!r}: the Redis database must be a number, not {raw!r}") from None
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path if unix else ''}", db


def _parse(name: str, raw: str, kind: type) -> object:
    if kind is bool:
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name} must be true or false, not {raw!r}")
    if kind in (int, float):
        try:
            value = kind(raw)
        except ValueError:
            raise ConfigError(f"{name} must be a number, not {raw!r}") from None
        if value < 0:
            raise ConfigError(f"{name} must not be negative")
        return value
    return raw
