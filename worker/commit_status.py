"""Reports a build's state to its commit on GitHub or GitLab (docs/INTEGRATIONS.md): GitHub
`POST /repos/{owner}/{repo}/statuses/{sha}` (pending → success, failure or error), GitLab
`POST /projects/{id}/statuses/{sha}` (pending → running → success, failed or canceled), under
the context "buildfarm/{subdomain}", linking to the build's dashboard page. Only git builds of a
known commit report. Reports are separate messages and may be retried out of order: a state
behind one already sent is dropped (common/records/integrations.py claim_status_rank)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import datetime
from urllib.parse import quote

from common import contract
from common.integrations import CANCELLED, FAILED, QUEUED, STARTED, SUCCEEDED
from common.models import Build, ErrorKind, SourceType
from common.records.integrations import StoredCommitStatus
from worker import metrics
from worker.context import WorkerContext
from worker.integrations import build_page
from worker.outbound_http import attempt, decrypted

logger = logging.getLogger("buildfarm.integrations")

_COMMIT = re.compile(r"^[0-9a-f]{40}$")
# Each event's rank: a report never goes back to a lower one.
RANKS = {QUEUED: 1, STARTED: 2, SUCCEEDED: 3, FAILED: 3, CANCELLED: 3}
# GitHub's description is at most 140 characters.
MAX_DESCRIPTION = 140


def _state(provider: str, event: str, build: Build) -> str:
    if provider == "gitlab":
        return {QUEUED: "pending", STARTED: "running", SUCCEEDED: "success", FAILED: "failed"}.get(
            event, "canceled"
        )
    if event in (QUEUED, STARTED):
        return "pending"
    if event == SUCCEEDED:
        return "success"
    # GitHub has no "cancelled"; "failure" is the build's own, "error" the farm's or a cancel.
    return "failure" if build.error_kind in (ErrorKind.USER, ErrorKind.TIMEOUT) else "error"


def _description(event: str, build: Build) -> str:
    if event == QUEUED:
        text = "Queued"
    elif event == STARTED:
        text = "Building"
    elif event == SUCCEEDED:
        text = f"Built in {_seconds(build):.0f} s" if build.started_at and build.finished_at else "Built"
    else:
        text = build.error or ("Cancelled" if event == CANCELLED else "Failed")
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _seconds(build: Build) -> float:
    start, end = (
        datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (build.started_at, build.finished_at)
    )
    return (end - start).total_seconds()


def _request(target: StoredCommitStatus, build: Build) -> tuple[str, Callable[[str], dict[str, str]]]:
    """The provider's URL for the build's commit, and its headers given the token."""
    if target.provider == "gitlab":
        url = f"{target.api_url}/projects/{quote(target.repository, safe='')}/statuses/{build.commit_sha}"
        return url, lambda token: {"PRIVATE-TOKEN": token}
    url = f"{target.api_url}/repos/{target.repository}/statuses/{build.commit_sha}"
    return url, lambda token: {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"}


def report(ctx: WorkerContext, build_id: str, event: str, attempt_number: int) -> bool:
    """One attempt; False when it should be tried again, True when done (reported, or nothing
    to report, or refused for good)."""
    build = ctx.records.load(build_id)
    target = ctx.records.commit_status(build.deployment_id) if build else None
    if build is None or target is None or build.source_type != SourceType.GIT:
        return True
    if not _COMMIT.match(build.commit_sha or ""):
        return True  # the commit is not known yet (the branch tip before its clone)
    if not ctx.records.claim_status_rank(build.id, RANKS[event]):
        return True  # a later state was reported already
    state = _state(target.provider, event, build)
    body = {
        "state": state,
        "description": _description(event, build),
        "context": f"buildfarm/{build.subdomain}",
    }
    if page := build_page(ctx, build):
        body["target_url"] = page
    if target.provider == "gitlab":
        body["name"] = body.pop("context")
    url, headers = _request(target, build)
    outcome = attempt(
        ctx.config, url, contract.encode(body), lambda: headers(decrypted(ctx.config, target.token))
    )
    # A refusal of the request itself (a bad token, no such repository or commit) stays one.
    refused = (
        outcome.status_code is not None and 400 <= outcome.status_code < 500 and outcome.status_code != 429
    )
    metrics.integration_request("commit_status", outcome.ok)
    said = f"answered {outcome.status_code}: {outcome.text[:200]}" if outcome.status_code else outcome.text
    log = logger.info if outcome.ok else logger.warning
    log(
        "build %s: commit status %s to %s, attempt %s: %s",
        build.id,
        state,
        target.provider,
        attempt_number,
        f"reported ({outcome.status_code})" if outcome.ok else said,
    )
    return outcome.ok or outcome.final or refused
