"""The domain model: deployments, builds, their statuses, and how they sit in Redis hashes."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Self

import msgspec


class BuildStatus(StrEnum):
    PENDING = "pending"
    BUILDING = "building"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


class ErrorKind(StrEnum):
    """Whose fault a build that did not succeed is: the user's (their Dockerfile, step, source or
    image), the farm's own parts (S3, registry, engine, Redis, a worker lost, an internal error),
    a deadline that passed, or a cancel."""

    USER = "user"
    INFRASTRUCTURE = "infrastructure"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = frozenset({BuildStatus.SUCCESS, BuildStatus.FAILED, BuildStatus.CANCELLED})

# The only moves a build's status may make; terminal states never change. A pending build
# fails without running when it could not be queued or waited past the queue deadline.
ALLOWED_TRANSITIONS: dict[BuildStatus, frozenset[BuildStatus]] = {
    BuildStatus.PENDING: frozenset({BuildStatus.BUILDING, BuildStatus.CANCELLED, BuildStatus.FAILED}),
    BuildStatus.BUILDING: frozenset(TERMINAL_STATUSES),
}

# A deployment's status mirrors its latest build; "created" means it has never been built.
DEPLOYMENT_CREATED = "created"


class TenantLimits(msgspec.Struct, frozen=True):
    """A tenant's limits in force (common/tenant_limits.py); 0 means no limit. The attribute
    names are the fields of the tenant's limits hash and the CLI's flags."""

    # Builds building at once; more wait while other tenants' builds start.
    max_running: int
    # Builds pending; a deploy (or webhook) beyond it is answered 429.
    max_queued: int
    # Source uploads in flight; 429 beyond.
    max_uploads: int
    # Log WebSockets open; 429 beyond.
    max_log_streams: int
    # Deploy requests (deploys, retries, webhooks) per minute; 429 beyond.
    deploys_per_minute: int


LIMIT_NAMES = TenantLimits.__struct_fields__


class SourceType(StrEnum):
    GIT = "git"
    ARCHIVE = "archive"


def utc_now() -> str:
    """The current time as RFC 3339 UTC with millisecond precision and a `Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


class _RedisHash(msgspec.Struct):
    """A record kept in a Redis hash of strings. Hashes stay small (Redis keeps them in its
    compact listpack encoding): None is not stored, and nothing derivable is."""

    def to_redis(self) -> dict[str, str]:
        """The fields that have a value; an absent field reads back as None."""
        out = {}
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if isinstance(value, bool):
                out[name] = "1" if value else "0"
            elif value is not None:
                out[name] = str(value)
        return out

    @classmethod
    def from_redis(cls, raw: dict[bytes, bytes]) -> Self | None:
        """The record, or None for a hash that is not one: missing, or a stub that a write racing
        the record's deletion left (it lacks the required fields)."""
        # An empty value reads back as an absent one; strict=False parses numbers and "1"/"0".
        try:
            return msgspec.convert({k.decode(): v.decode() for k, v in raw.items() if v}, cls, strict=False)
        except msgspec.ValidationError:
            return None


class Deployment(_RedisHash, kw_only=True):
    id: str
    tenant: str
    name: str
    subdomain: str
    source_type: str
    repo_url: str | None = None
    branch: str | None = None
    dockerfile_path: str
    created_at: str
    updated_at: str
    latest_build_id: str | None = None
    archive_sha256: str | None = None
    archive_size: int = 0
    archive_has_dockerfile: bool = False
    archive_uploaded_at: str | None = None
    # 0: the farm's default build timeout.
    build_timeout_s: int = 0
    # A new deploy cancels this deployment's builds still waiting in the queue.
    supersede_queued: bool = False
    # Git deployments: the shared secret of push webhooks (docs/WEBHOOKS.md). Kept as is, since
    # GitHub's HMAC needs the secret itself; never in a repr, nor in the public deployment
    # (common/contract.py) but for the create response.
    webhook_secret: str | None = None
    # JSON text (json_text): the values of the Dockerfile's ARGs for every build.
    build_args: str | None = None
    # Raised by every change to the deployment's builds (common/records/scripts.py,
    # _BUILDS_CHANGED): a page of them read at one revision is still true at the same one.
    builds_revision: int = 0

    def args(self) -> dict[str, str]:
        return _args(self.build_args)

    def __repr__(self) -> str:
        shown = (
            f"{name}={getattr(self, name)!r}" for name in self.__struct_fields__ if name != "webhook_secret"
        )
        return f"Deployment({', '.join(shown)})"


class Build(_RedisHash):
    id: str
    deployment_id: str
    tenant: str
    number: int
    status: str
    subdomain: str
    source_type: str
    dockerfile_path: str
    created_at: str
    repo_url: str | None = None
    branch: str | None = None
    # Git: the requested or resolved commit; archive: the SHA-256 of the archive to build.
    commit_sha: str | None = None
    # Archive builds: the Dockerfile uploaded with the archive replaces dockerfile_path.
    inline_dockerfile: bool = False
    image_tag: str | None = None
    image_digest: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    # An ErrorKind, set with `error` when the build ends without success.
    error_kind: str | None = None
    attempt: int = 0
    worker: str | None = None
    cancel_requested_by: str | None = None
    lease_expires_ms: int = 0
    timeout_s: int = 0
    log_state: str | None = None
    # JSON text (json_text): the ARG values this build uses, the deployment's merged with the deploy's.
    build_args: str | None = None
    no_cache: bool = False
    # JSON text (json_text) of contract.BuildTimings, written by the worker as the build goes.
    timings: str | None = None

    def args(self) -> dict[str, str]:
        return _args(self.build_args)


def _args(text: str | None) -> dict[str, str]:
    return msgspec.json.decode(text, type=dict[str, str]) if text else {}


def json_text(value: dict) -> str | None:
    """A dict as a record keeps it in a hash field: compact JSON with sorted keys, None if empty."""
    return msgspec.json.encode(value, order="sorted").decode() if value else None


class LogState(StrEnum):
    """Where a build's log lives: nowhere yet, the live stream, the archive, or gone."""

    LIVE = "live"
    ARCHIVED = "archived"
    EXPIRED = "expired"


def image_tag(registry: str, subdomain: str, commit_sha: str) -> str:
    """The seed's tag scheme: `{registry}/{subdomain}:{short_hash}`."""
    return f"{registry}/{subdomain}:{commit_sha[:8]}"
