"""A build's events for its deployment's integrations (docs/INTEGRATIONS.md): their names, the
queue message that announces one (the API and the build pipeline send it; a worker's actor fans
it out into deliveries), and the signature of a notification (Stripe's scheme: an HMAC-SHA256
over `{timestamp}.{body}`, so that a receiver can refuse a replayed one)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from common.config import Config
from common.contract import NOTIFICATION_EVENTS
from common.models import BuildStatus

if TYPE_CHECKING:
    import dramatiq

ANNOUNCE_ACTOR = "announce_build"
DELIVER_ACTOR = "deliver_notification"
REPORT_ACTOR = "report_commit_status"

# A build was queued: told to commit statuses only (GitHub's and GitLab's "pending").
QUEUED = "build.queued"
STARTED, SUCCEEDED, FAILED, CANCELLED = NOTIFICATION_EVENTS
ENDED = {BuildStatus.SUCCESS: SUCCEEDED, BuildStatus.FAILED: FAILED, BuildStatus.CANCELLED: CANCELLED}

SIGNATURE_HEADER = "X-Buildfarm-Signature"
EVENT_ID_HEADER = "X-Buildfarm-Event-Id"
EVENT_HEADER = "X-Buildfarm-Event"
# Event ids: one per build and event, so an announcement handled twice gives the same id.
_EVENT_NAMESPACE = uuid.UUID("6f1c7e2a-43b5-4f57-9d0e-2b6a1f3c9e10")


def integration_message(config: Config, actor: str, *args: str | bytes) -> dramatiq.Message:
    """A message to one of the integration actors (the API never imports the worker's actors).
    Dramatiq is imported here, not by the module: the CLI reads the module's names only, and
    Dramatiq's import is a fifth of its start."""
    import dramatiq

    return dramatiq.Message(
        queue_name=config.integrations_queue, actor_name=actor, args=args, kwargs={}, options={}
    )


def announcement(config: Config, build_id: str, event: str) -> dramatiq.Message:
    return integration_message(config, ANNOUNCE_ACTOR, build_id, event)


def event_id(build_id: str, event: str) -> str:
    return str(uuid.uuid5(_EVENT_NAMESPACE, f"{build_id}:{event}"))


def new_signing_secret() -> str:
    """A notification target's signing secret: 256 random bits."""
    return "whsec_" + secrets.token_hex(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Buildfarm-Signature header of `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


PROVIDER_APIS = {"github": "https://api.github.com", "gitlab": "https://gitlab.com/api/v4"}


def repository_of(repo_url: str) -> str | None:
    """A git URL's repository as its provider names it (`owner/name`, `group/…/name`), or None
    when its path has no owner."""
    path = urlsplit(repo_url).path.strip("/").removesuffix(".git")
    return path if path.count("/") >= 1 and "" not in path.split("/") else None
