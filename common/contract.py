"""The API contract, declared once: the request and response bodies as msgspec Structs.

From these the API validates request bodies (api/validation.py), encodes its JSON, and derives
the components of its OpenAPI description (api/openapi.py); the worker writes the same public
build record beside an archived log, and the CLI prints its fields. A field's type, limits,
pattern and description live here and nowhere else.

A pattern's `description` is also the error a client gets when a value does not match it, so it
is written as what the value must be ("Field 'subdomain' must be <description>"). Patterns end in
`$(?!\\n)`: Python's `$` also matches before a final newline, JSON Schema's does not.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
import msgspec.inspect
from msgspec import UNSET, Meta, Struct, UnsetType

from common.config import Config
from common.models import DEPLOYMENT_CREATED, BuildStatus, ErrorKind, TenantLimits
from common.models import Build as BuildRecord
from common.models import Deployment as DeploymentRecord
from common.outbound import redact_userinfo

Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
Time = Annotated[str, Meta(description="RFC 3339 UTC, with milliseconds and a Z")]
STATUSES: tuple[str, ...] = tuple(s.value for s in BuildStatus)
Status = Literal[STATUSES]  # type: ignore[valid-type]
ERROR_KINDS: tuple[str, ...] = tuple(k.value for k in ErrorKind)


def _matching(pattern: str, description: str, max_length: int | None = None) -> Any:
    """Text that must match `pattern`; `description` is also the error's wording (see above)."""
    return Annotated[str, Meta(max_length=max_length, pattern=pattern, description=description)]


Name = _matching(
    r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$(?!\n)",
    "a name that is not blank and has no control characters",
    100,
)
Subdomain = _matching(
    r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$(?!\n)",
    "a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'",
    63,
)
# The schemes a farm allows are its configuration (BUILDFARM_ALLOWED_GIT_SCHEMES), checked on
# top of this pattern by api/validation.py.
# Credentials in a URL would be shown and logged wherever the URL is: they are refused.
RepoUrl = _matching(
    r"^(?!-)(?![A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@)[^\s\x00-\x1f\x7f]+$(?!\n)",
    "a URL without credentials (user:password@), spaces, control characters or a leading '-'",
    2048,
)
Branch = _matching(
    r"^(?![-/.])(?!.*\.\.)(?!.*//)(?!.*/\.)(?!.*(?:/|\.|\.lock)$)[A-Za-z0-9._/-]+$(?!\n)",
    "a valid git branch name (letters, digits, '.', '_', '-', '/'; no '..')",
    255,
)
DockerfilePath = _matching(
    r"^(?!/)(?!.*//)(?!.*/$)(?!(?:.*/)?\.\.(?:/|$))[^\\\x00-\x1f\x7f]+$(?!\n)",
    "a relative path inside the build context (no '..' or empty segments)",
    255,
)
CommitSha = _matching(r"^[0-9a-f]{40}$(?!\n)", "a full 40-character lowercase hex SHA")
# Capped by the farm's BUILDFARM_BUILD_TIMEOUT_S, checked on top of this by api/validation.py.
BuildTimeout = Annotated[
    int,
    Meta(
        ge=1,
        description="Seconds, at most the farm's maximum build timeout (BUILDFARM_BUILD_TIMEOUT_S, "
        f"{Config.build_timeout_s} by default): 422 above it",
    ),
]
# Names BuildKit reads as its own settings (BUILDKIT_INLINE_CACHE, BUILDKIT_SYNTAX, …) are the
# farm's to set, not a build's.
BuildArgName = _matching(
    r"^(?!BUILDKIT_)[A-Za-z_][A-Za-z0-9_]*$(?!\n)",
    "an ARG name: letters, digits and '_', not starting with a digit or 'BUILDKIT_'",
    128,
)
BuildArgValue = _matching(r"^[^\x00]*$(?!\n)", "text without NUL characters", 4096)
MAX_BUILD_ARGS = 64
BuildArgs = Annotated[
    dict[BuildArgName, BuildArgValue],
    Meta(max_length=MAX_BUILD_ARGS, description="Values of the Dockerfile's ARGs (`--build-arg`)"),
]
# Never '.' or '..': a name may end up as a file name on a worker.
SecretName = _matching(
    r"^(?!\.\.?$)[A-Za-z0-9_.-]+$(?!\n)",
    "a secret name: letters, digits, '_', '.' or '-' (not '.' or '..')",
    64,
)
MAX_SECRETS = 50


# Requests


class NewDeployment(Struct, forbid_unknown_fields=True):
    """POST /deployments: a git deployment (the default) or an archive one."""

    name: Name
    subdomain: Subdomain
    source_type: Literal["git", "archive"] = "git"
    repo_url: Annotated[
        RepoUrl | None,
        Meta(
            description="Required for git. Its host must be public: a host that is or resolves to a "
            "loopback, private, link-local, unspecified or multicast address is refused (422) unless "
            "the operator opened its range (BUILDFARM_OUTBOUND_ALLOW); workers check it again when "
            "they connect, and follow no redirects"
        ),
    ] = None
    branch: Annotated[Branch | None, Meta(description="git only; default: main")] = None
    dockerfile_path: DockerfilePath = "Dockerfile"
    build_timeout_s: Annotated[BuildTimeout | None, Meta(description="null: the farm's default")] = None
    supersede_queued: Annotated[
        bool, Meta(description="A new deploy cancels this deployment's builds still in the queue")
    ] = False
    build_args: BuildArgs = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.source_type == "git":
            if self.repo_url is None:
                raise ValueError("Field 'repo_url' is required for git deployments")
            if self.branch is None:
                self.branch = "main"
        elif self.repo_url is not None or self.branch is not None:
            raise ValueError("Archive deployments take no 'repo_url' or 'branch'")


class DeployRequest(Struct, forbid_unknown_fields=True):
    """POST /deployments/{id}/deploy (the body is optional): git builds this commit, or the
    branch tip without one."""

    commit_sha: CommitSha | None = None
    build_args: Annotated[
        BuildArgs, Meta(description="Merged over the deployment's build args; these win")
    ] = msgspec.field(default_factory=dict)
    no_cache: Annotated[bool, Meta(description="Rebuild every step: use no cached layer")] = False


class DeploymentUpdate(Struct, forbid_unknown_fields=True):
    """PATCH /deployments/{id}: the fields given replace the deployment's; the next build uses
    them. `build_args` replaces the whole set."""

    name: Name | UnsetType = UNSET
    branch: Annotated[Branch | UnsetType, Meta(description="git only")] = UNSET
    dockerfile_path: DockerfilePath | UnsetType = UNSET
    build_timeout_s: Annotated[
        BuildTimeout | None | UnsetType, Meta(description="null: the farm's default")
    ] = UNSET
    supersede_queued: bool | UnsetType = UNSET
    build_args: BuildArgs | UnsetType = UNSET


class SecretValue(Struct, forbid_unknown_fields=True):
    """PUT /deployments/{id}/secrets/{name}: the secret's value, write-only."""

    value: Annotated[str, Meta(min_length=1, max_length=32 * 1024)]


# Responses


class Error(Struct):
    """Every error, whatever its status."""

    error: str
    message: str


class BuildTimings(Struct, omit_defaults=True):
    """Where a build's time went, in seconds, and how many of its steps were cached."""

    queued_s: float | None = None
    source_s: Annotated[float | None, Meta(description="Fetching the source")] = None
    build_s: float | None = None
    push_s: float | None = None
    steps: int | None = None
    cached_steps: int | None = None


class Build(Struct):
    """A build as clients see it: the seed's fields and a few more (never fewer)."""

    id: Uuid
    deployment_id: Uuid
    number: Annotated[int, Meta(description="1, 2, … within the deployment")]
    status: Status
    commit_sha: Annotated[
        str | None, Meta(description="git: the full 40-hex commit; archive: SHA-256 of the archive")
    ]
    image_tag: Annotated[str | None, Meta(description="{registry}/{subdomain}:{commit_sha[:8]}, once pushed")]
    image_digest: str | None
    created_at: Time | None
    started_at: Time | None
    finished_at: Time | None
    error: Annotated[str | None, Meta(description="Why the build failed or was cancelled")]
    error_kind: Annotated[
        Literal[ERROR_KINDS] | None,  # type: ignore[valid-type]
        Meta(
            description="Whose the failure is: 'user' (the Dockerfile, a step, the source, a refused "
            "image, a limit the build's own steps hit), 'infrastructure' (S3, the registry, the "
            "Docker engine, Redis, a worker lost: the farm's), 'timeout' (the build or queue "
            "deadline passed) or 'cancelled'; null unless the build failed or was cancelled"
        ),
    ]
    attempt: Annotated[int, Meta(description="Runs started for this build (0 while pending)")]
    worker: Annotated[str | None, Meta(description="host:pid of the worker that ran it")]
    build_args: dict[str, str]
    no_cache: bool
    timings: Annotated[BuildTimings | None, Meta(description="Set as the build goes")]
    queue_position: Annotated[
        int | None,
        Meta(
            description="A pending build's place among its tenant's queued builds (1: the tenant's "
            "next; other tenants' builds start in turn between them), best effort; null otherwise "
            "and in lists"
        ),
    ] = None


class SourceArchive(Struct):
    """The last source archive uploaded to an archive deployment."""

    sha256: str
    size: int
    inline_dockerfile: bool
    uploaded_at: Time | None


class Deployment(Struct):
    id: Uuid
    name: str
    subdomain: str
    source_type: Literal["git", "archive"]
    repo_url: str | None
    branch: str | None
    dockerfile_path: str
    status: Annotated[
        Literal[(DEPLOYMENT_CREATED, *STATUSES)],  # type: ignore[valid-type]
        Meta(description="The latest build's status; 'created' before the first build"),
    ]
    build_timeout_s: Annotated[int | None, Meta(description="null: the farm's default")]
    supersede_queued: bool
    build_args: dict[str, str]
    latest_build_id: Uuid | None
    archive: SourceArchive | None
    created_at: Time
    updated_at: Time
    webhook_secret: Annotated[
        str | UnsetType,
        Meta(description="Git deployments, in the create response only: the push webhooks' secret"),
    ] = UNSET


class SecretNames(Struct):
    """GET /deployments/{id}/secrets: the names of the secrets set; values are never returned."""

    names: list[str]


class Upload(Struct):
    """POST /deployments/{id}/upload: the archive as stored."""

    status: Literal["uploaded"]
    size: int
    sha256: str


class WebhookSecret(Struct):
    webhook_secret: str


class WebhookAck(Struct):
    """A webhook delivery that starts no build: a ping (ok) or an event it ignores."""

    status: Literal["ok", "ignored"]
    message: str


class PushPayload(Struct):
    """The provider's push payload; other fields are ignored."""

    ref: Annotated[str, Meta(description="refs/heads/<branch>")]
    after: Annotated[str | None, Meta(description="The pushed commit (all zeros: branch deleted)")] = None
    checkout_sha: Annotated[str | None, Meta(description="GitLab: the pushed commit")] = None
    deleted: Annotated[bool, Meta(description="GitHub: the push deleted the branch")] = False


class FarmBuild(Struct):
    """A build a worker runs (admin tokens only)."""

    build_id: Uuid
    deployment_id: Uuid
    number: int


class FarmWorker(Struct, omit_defaults=True):
    """One worker process, as its last heartbeat said."""

    id: Annotated[str, Meta(description="host:pid, as a build names the worker that ran it")]
    host: str
    pid: int
    threads: Annotated[int, Meta(description="Build slots: each thread runs one build at a time")]
    slots_in_use: int
    builder: Annotated[str, Meta(description="buildkit or classic")]
    engine_version: Annotated[
        str | None, Meta(description="The Docker engine's; null while it does not answer")
    ]
    started_at: Time
    last_heartbeat: Time
    stale: Annotated[
        bool,
        Meta(
            description="It missed 3 heartbeats (BUILDFARM_WORKER_HEARTBEAT_S): stopped or cut off; "
            "it leaves the list when its record expires (BUILDFARM_WORKER_EXPIRY_S)"
        ),
    ]
    builds: Annotated[
        list[FarmBuild] | UnsetType, Meta(description="Admin tokens only: the builds its busy slots run")
    ] = UNSET


class FarmHost(Struct):
    """The worker processes of one host."""

    host: str
    processes: int
    threads: Annotated[int, Meta(description="Threads of each process (the most, if they differ)")]
    slots_in_use: int
    stale: Annotated[bool, Meta(description="Every process of the host is stale")]


class FarmQueue(Struct):
    depth: Annotated[int, Meta(description="Builds waiting for a worker")]
    oldest_wait_s: Annotated[float | None, Meta(description="How long the oldest waiting build has waited")]
    running: Annotated[int, Meta(description="Builds running")]


class Farm(Struct):
    """GET /farm: the workers alive, the queue, and the pace of builds. A tenant's token sees
    aggregates only; an admin's (`buildfarm token create --admin`) also which build each slot runs."""

    view: Literal["tenant", "admin"]
    hosts: list[FarmHost]
    workers: list[FarmWorker]
    slots: Annotated[int, Meta(description="Threads of the workers not stale")]
    slots_in_use: int
    queue: FarmQueue
    builds_last_hour: Annotated[int, Meta(description="Builds that ended (any outcome) within the last hour")]
    builds_per_minute: Annotated[float, Meta(description="builds_last_hour / 60")]


class Usage(Struct):
    """GET /usage: the caller's tenant's builds now, its limits, its build time this month."""

    tenant: str
    running: Annotated[int, Meta(description="Builds building now")]
    queued: Annotated[int, Meta(description="Builds pending now")]
    limits: Annotated[
        TenantLimits,
        Meta(description="The limits in force: the tenant's own where an admin set them, else the farm's"),
    ]
    month: Annotated[str, Meta(description="This month, UTC: YYYY-MM")]
    build_minutes: Annotated[
        float,
        Meta(
            description="Minutes of the builds that ended this month, each from its first start to "
            "its end (takeovers included); builds that never started count nothing"
        ),
    ]


# Integrations (docs/INTEGRATIONS.md): notifications of a deployment's builds, and commit statuses.

NOTIFICATION_EVENTS = ("build.started", "build.succeeded", "build.failed", "build.cancelled")
NotificationEvent = Literal[NOTIFICATION_EVENTS]  # type: ignore[valid-type]
MAX_NOTIFICATIONS = 10
# Checked on top of this pattern by the outbound rule (common/outbound.py), like a git URL.
HookUrl = _matching(
    r"^[Hh][Tt][Tt][Pp][Ss]?://(?![^/?#]*@)[^\s\x00-\x1f\x7f]+$(?!\n)",
    "an http(s) URL without credentials (user:password@), spaces or control characters",
    2048,
)
# Sent in a header: printable ASCII without spaces.
ProviderToken = _matching(r"^[\x21-\x7e]+$(?!\n)", "printable ASCII without spaces", 1024)
# GitHub's owner/name, or GitLab's project path (groups/…/name) or numeric id; no '.' or '..'.
Repository = _matching(
    r"^(?!(?:.*/)?\.\.?(?:/|$))(?:[0-9]+|[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)+)$(?!\n)",
    "'owner/name' (GitHub), a project path 'group/…/name' or a numeric project id (GitLab)",
    255,
)


class NewNotification(Struct, forbid_unknown_fields=True):
    """POST /deployments/{id}/notifications: where to send which of its builds' events."""

    url: Annotated[
        HookUrl,
        Meta(
            description="Its host must be public unless the operator opened its range "
            "(BUILDFARM_OUTBOUND_ALLOW), as for git URLs; redirects are not followed"
        ),
    ]
    events: Annotated[list[NotificationEvent], Meta(min_length=1, max_length=len(NOTIFICATION_EVENTS))] = (
        msgspec.field(default_factory=lambda: list(NOTIFICATION_EVENTS[1:]))
    )
    format: Annotated[
        Literal["json", "slack"],
        Meta(description="json: a BuildEvent; slack: an incoming webhook's {text}"),
    ] = "json"


class Notification(Struct):
    id: Uuid
    url: str
    events: list[str]
    format: Literal["json", "slack"]
    created_at: Time
    secret: Annotated[
        str | UnsetType,
        Meta(description="In the create response only: the key of X-Buildfarm-Signature"),
    ] = UNSET


class Delivery(Struct):
    """One attempt to deliver an event to a notification target."""

    event_id: Uuid
    event: str
    build_id: Uuid
    attempt: Annotated[int, Meta(description="1 for the first try, then one more per retry")]
    at: Time
    delivered: Annotated[bool, Meta(description="The target answered 2xx")]
    status_code: Annotated[int | None, Meta(description="null: no answer (refused, timed out, …)")]
    answer: Annotated[str, Meta(description="The start of the answer's body, or why there is none")]
    duration_ms: int


class DeploymentRef(Struct):
    id: Uuid
    name: str
    subdomain: str


class BuildEvent(Struct):
    """The body of a json notification (signed: X-Buildfarm-Signature)."""

    id: Annotated[Uuid, Meta(description="The event's id, also in X-Buildfarm-Event-Id: the same on a retry")]
    type: NotificationEvent
    created_at: Time
    deployment: DeploymentRef
    build: Build
    url: Annotated[str | None, Meta(description="The build's dashboard page (BUILDFARM_PUBLIC_URL)")]


class CommitStatusTarget(Struct, forbid_unknown_fields=True):
    """PUT /deployments/{id}/commit-status: report this git deployment's builds to its provider."""

    provider: Literal["github", "gitlab"]
    token: Annotated[ProviderToken, Meta(description="Write-only: encrypted at rest, never returned")]
    api_url: Annotated[
        HookUrl | None,
        Meta(
            description="null: https://api.github.com or https://gitlab.com/api/v4; a GitHub "
            "Enterprise or self-hosted GitLab API otherwise (same outbound rule as notifications)"
        ),
    ] = None
    repository: Annotated[Repository | None, Meta(description="null: the repo_url's path")] = None


class CommitStatus(Struct):
    """Where a deployment's builds report their status (the token is never shown)."""

    provider: Literal["github", "gitlab"]
    api_url: str
    repository: str


# Every body of the API: each Struct declared above (the OpenAPI components).
SCHEMAS = tuple(
    kind for kind in list(globals().values()) if isinstance(kind, type) and kind.__module__ == __name__
)


def _from_json(kind: Any, empty: Any) -> Any:
    decode = msgspec.json.Decoder(kind).decode
    return lambda text: decode(text) if text else empty


# The public fields a record keeps as JSON text (common/models.py), and how they are read.
_FROM_JSON = {"build_args": _from_json(dict[str, str], {}), "timings": _from_json(BuildTimings, None)}


def public_build(record: BuildRecord, queue_position: int | None = None) -> Build:
    values = {name: getattr(record, name) for name in Build.__struct_fields__ if name != "queue_position"}
    for name, read in _FROM_JSON.items():
        values[name] = read(values[name])
    return Build(**values, queue_position=queue_position)


def _reader(name: str, kind: msgspec.inspect.Type) -> Any:
    if name in _FROM_JSON:
        return _FROM_JSON[name]
    kind = getattr(kind, "type", kind)  # Annotated
    if isinstance(kind, msgspec.inspect.IntType):
        return lambda text: int(text or 0)
    if isinstance(kind, msgspec.inspect.BoolType):
        return lambda text: text == "1"
    return None


# How Build's fields that are not text are read from their hash's text, by position.
_READERS = [
    (position, read)
    for position, field in enumerate(msgspec.inspect.type_info(Build).fields)
    if (read := _reader(field.name, field.type)) is not None
]


def build_from_values(values: list[bytes | None]) -> Build:
    """A public build from its hash's values, read in the order of Build's fields (the hot path
    of listing builds: no intermediate record)."""
    texts = [value.decode() if value is not None else None for value in values]
    for position, read in _READERS:
        texts[position] = read(texts[position])
    return Build(*texts)


# The public deployment's fields that are the stored record's as they are (the webhook secret is
# shown in the create response only, set there by hand).
_DEPLOYMENT_AS_STORED = [
    name
    for name in Deployment.__struct_fields__
    if name not in ("status", "repo_url", "build_timeout_s", "archive", "webhook_secret", "build_args")
]


def public_deployment(record: DeploymentRecord, status: str) -> Deployment:
    archive = None
    if record.archive_sha256:
        archive = SourceArchive(
            record.archive_sha256,
            record.archive_size,
            record.archive_has_dockerfile,
            record.archive_uploaded_at,
        )
    return Deployment(
        **{name: getattr(record, name) for name in _DEPLOYMENT_AS_STORED},
        # Deployments stored before credentials were refused may hold some: never shown.
        repo_url=redact_userinfo(record.repo_url) if record.repo_url else None,
        status=status,
        build_timeout_s=record.build_timeout_s or None,
        build_args=_FROM_JSON["build_args"](record.build_args),
        archive=archive,
    )


encode = msgspec.json.Encoder().encode


# Query parameters
# GET …/logs?strip_ansi=1 (common/ansi.py says which sequences go).
StripAnsi = Annotated[
    bool,
    Meta(
        description="1 (or true): the log as plain text, without its ANSI escape sequences "
        "(colours, cursor moves); 0 (the default): as the build wrote it"
    ),
]
