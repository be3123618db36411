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

from common.models import DEPLOYMENT_CREATED, BuildStatus
from common.models import Build as BuildRecord
from common.models import Deployment as DeploymentRecord

MAX_BUILD_TIMEOUT_S = 24 * 3600

Uuid = Annotated[str, Meta(extra_json_schema={"format": "uuid"})]
Time = Annotated[str, Meta(description="RFC 3339 UTC, with milliseconds and a Z")]
STATUSES: tuple[str, ...] = tuple(s.value for s in BuildStatus)
Status = Literal[STATUSES]  # type: ignore[valid-type]


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
RepoUrl = _matching(
    r"^(?!-)[^\s\x00-\x1f\x7f]+$(?!\n)", "a URL without spaces, control characters or a leading '-'", 2048
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
BuildTimeout = Annotated[int, Meta(ge=1, le=MAX_BUILD_TIMEOUT_S)]


# Requests


class NewDeployment(Struct, forbid_unknown_fields=True):
    """POST /deployments: a git deployment (the default) or an archive one."""

    name: Name
    subdomain: Subdomain
    source_type: Literal["git", "archive"] = "git"
    repo_url: Annotated[RepoUrl | None, Meta(description="Required for git")] = None
    branch: Annotated[Branch | None, Meta(description="git only; default: main")] = None
    dockerfile_path: DockerfilePath = "Dockerfile"
    build_timeout_s: Annotated[BuildTimeout | None, Meta(description="null: the farm's default")] = None
    supersede_queued: Annotated[
        bool, Meta(description="A new deploy cancels this deployment's builds still in the queue")
    ] = False

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


# Responses


class Error(Struct):
    """Every error, whatever its status."""

    error: str
    message: str


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
    attempt: Annotated[int, Meta(description="Runs started for this build (0 while pending)")]
    worker: Annotated[str | None, Meta(description="host:pid of the worker that ran it")]


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
    latest_build_id: Uuid | None
    archive: SourceArchive | None
    created_at: Time
    updated_at: Time
    webhook_secret: Annotated[
        str | UnsetType,
        Meta(description="Git deployments, in the create response only: the push webhooks' secret"),
    ] = UNSET


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


# Every body of the API: each Struct declared above (the OpenAPI components).
SCHEMAS = tuple(
    kind for kind in list(globals().values()) if isinstance(kind, type) and kind.__module__ == __name__
)


def public_build(record: BuildRecord) -> Build:
    return Build(**{name: getattr(record, name) for name in Build.__struct_fields__})


# Where Build's integer fields stand among its fields; every other public field is text.
_INTEGER_POSITIONS = [
    position
    for position, field in enumerate(msgspec.inspect.type_info(Build).fields)
    if isinstance(getattr(field.type, "type", field.type), msgspec.inspect.IntType)
]


def build_from_values(values: list[bytes | None]) -> Build:
    """A public build from its hash's values, read in the order of Build's fields (the hot path
    of listing builds: no intermediate record)."""
    texts = [value.decode() if value is not None else None for value in values]
    for position in _INTEGER_POSITIONS:
        texts[position] = int(texts[position] or 0)
    return Build(*texts)


# The public deployment's fields that are the stored record's as they are (the webhook secret is
# shown in the create response only, set there by hand).
_DEPLOYMENT_AS_STORED = [
    name
    for name in Deployment.__struct_fields__
    if name not in ("status", "build_timeout_s", "archive", "webhook_secret")
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
        status=status,
        build_timeout_s=record.build_timeout_s or None,
        archive=archive,
    )


encode = msgspec.json.Encoder().encode
