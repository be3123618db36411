"""Submitting a build, the one way every route does it (deploy, retry, push webhooks): a new
pending build is stored, handed to the workers through Dramatiq (the API never imports the
worker's actors), announced to its deployment's integrations, and, when its deployment
supersedes queued builds, the older builds still waiting in the queue are cancelled."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import falcon
from dramatiq.brokers.redis import RedisBroker

from api.admission import TenantAdmission
from api.errors import conflict, not_found, too_many_requests, unprocessable
from api.openapi import BUILD
from api.store import RecordStore, new_id
from common.broker import build_message
from common.config import Config
from common.contract import MAX_BUILD_ARGS, DeployRequest, public_build
from common.integrations import CANCELLED, QUEUED, announcement
from common.models import Build, BuildStatus, Deployment, ErrorKind, SourceType, json_text, utc_now
from common.records.builds import QueueFull

logger = logging.getLogger("buildfarm.api")

# Records a new build's id under a request's key (Idempotency-Key, webhook delivery id) and
# returns the build id an earlier request with the same key recorded, if any.
Claim = Callable[[str], Awaitable[str | None]]
# What a pending build takes from its deployment unless given, and what a retry copies: the
# source, and how it is built.
DEPLOYMENT_SOURCE = ("subdomain", "source_type", "dockerfile_path", "build_args")
SOURCE_FIELDS = (*DEPLOYMENT_SOURCE, "repo_url", "branch", "commit_sha", "inline_dockerfile", "no_cache")
# When a tenant whose queue is full (its max_queued) is told to try again.
QUEUE_FULL_RETRY_AFTER_S = 30


class BuildSubmission:
    def __init__(
        self, config: Config, store: RecordStore, broker: RedisBroker, admission: TenantAdmission
    ) -> None:
        self.config = config
        self.store = store
        self.broker = broker
        self.admission = admission

    async def deploy(
        self, deployment: Deployment, request: DeployRequest | None = None, claim: Claim | None = None
    ) -> Build:
        """A build of the deployment's source: git, of the request's `commit_sha` or else the
        branch tip; archive, of the last upload (422 with a commit, 409 before any upload). The
        request's build args are merged over the deployment's (422 past MAX_BUILD_ARGS). With
        `claim`, a request repeating an earlier one's key gets the build the earlier one created.
        Every request counts against the tenant's deploys per minute (429 past it)."""
        max_queued = (await self.admission.deploy_request(deployment.tenant)).max_queued
        request = request or DeployRequest()
        commit_sha = request.commit_sha
        build = _pending_build(deployment, no_cache=request.no_cache)
        if request.build_args:
            build.build_args = json_text(_merged_args(deployment, request.build_args))
        if deployment.source_type == SourceType.ARCHIVE:
            if commit_sha is not None:
                raise unprocessable("Archive deployments build their uploaded archive: no 'commit_sha'")
            if not deployment.archive_sha256:
                raise conflict("No archive uploaded yet: POST one to /upload first")
            build.commit_sha = deployment.archive_sha256
            build.inline_dockerfile = deployment.archive_has_dockerfile
        else:
            build.repo_url = deployment.repo_url
            build.branch = deployment.branch
            build.commit_sha = commit_sha
        if claim is not None:
            # A full queue answers before the request's key is taken, so that a retry may build.
            await self._check_queue(deployment.tenant, max_queued)
            earlier = await claim(build.id)
            if earlier is not None:
                found = await self.store.get_build(deployment.id, earlier)
                if found is None:
                    raise conflict("An earlier request with this key is still being processed")
                return found
        return await self._submit(deployment, build, max_queued)

    async def retry(self, deployment: Deployment, old: Build) -> Build:
        """A new build of exactly `old`'s source — the same commit (git), or the same archive and
        inline Dockerfile — whatever the deployment got since (409 if it never had one). It counts
        against the tenant's deploys per minute (429 past it)."""
        max_queued = (await self.admission.deploy_request(deployment.tenant)).max_queued
        if not old.commit_sha:
            raise conflict("This build never resolved its commit, so there is no exact source to retry")
        source = {name: getattr(old, name) for name in SOURCE_FIELDS}
        return await self._submit(deployment, _pending_build(deployment, **source), max_queued)

    async def _submit(self, deployment: Deployment, build: Build, max_queued: int) -> Build:
        """Stores and queues `build` (404 if the deployment went meanwhile). If the queue is
        unreachable the build is marked failed (nothing waits for a message that was never sent)
        and the caller gets 503; 429 if the tenant has `max_queued` builds queued (0: no limit),
        checked atomically as the build is stored."""
        try:
            created = await self.store.create_build(build, max_queued, queued=True)
        except QueueFull:
            raise _queue_full(deployment.tenant, max_queued) from None
        if created is None:
            raise not_found("Deployment not found")
        try:
            # A sub-millisecond Redis call: cheaper inline than a hop to a thread.
            self.broker.enqueue(build_message(self.config, build.id))
        except Exception:
            logger.exception("could not queue build %s", build.id)
            fields = {
                "finished_at": utc_now(),
                "error": "The build queue (Redis) did not take the build: try again",
                "error_kind": ErrorKind.INFRASTRUCTURE.value,
            }
            pending = frozenset({BuildStatus.PENDING})
            await self.store.transition(
                build.id, build.deployment_id, BuildStatus.FAILED, fields, expected=pending
            )
            raise falcon.HTTPServiceUnavailable(
                description="The build queue is unavailable: try again"
            ) from None
        await self.announce(build.id, build.deployment_id, QUEUED)
        if deployment.supersede_queued:
            for cancelled in await self.store.supersede_queued(build):
                await self.announce(cancelled, build.deployment_id, CANCELLED)
        return build

    async def announce(self, build_id: str, deployment_id: str, event: str) -> None:
        """Tells the deployment's integrations (notifications, commit status) of a build's event,
        if it has any; never fails the request (the event is lost, and logged)."""
        try:
            if await self.store.has_integrations(deployment_id):
                self.broker.enqueue(announcement(self.config, build_id, event))
        except Exception:
            logger.exception("could not announce %s of build %s", event, build_id)

    async def _check_queue(self, tenant: str, max_queued: int) -> None:
        """429 if the tenant has its limit of builds queued already (_submit checks again,
        atomically, as it stores the build)."""
        if max_queued and (await self.store.tenant_counts(tenant)).queued >= max_queued:
            raise _queue_full(tenant, max_queued)


def _queue_full(tenant: str, max_queued: int) -> falcon.HTTPError:
    return too_many_requests(
        f"Tenant '{tenant}' has {max_queued} builds queued, its limit (max_queued): "
        f"try again in {QUEUE_FULL_RETRY_AFTER_S} s",
        QUEUE_FULL_RETRY_AFTER_S,
    )


def render_queued(resp: falcon.Response, build: Build) -> None:
    """The answer of every route that queues a build: 202, where the build lives, the build."""
    resp.status = falcon.HTTP_202
    resp.location = BUILD.format(deployment_id=build.deployment_id, build_id=build.id)
    resp.media = public_build(build)


def _merged_args(deployment: Deployment, given: dict[str, str]) -> dict[str, str]:
    merged = {**deployment.args(), **given}
    if len(merged) > MAX_BUILD_ARGS:
        raise unprocessable(
            f"Too many build args: {len(merged)} with the deployment's, at most {MAX_BUILD_ARGS}"
        )
    return merged


def _pending_build(deployment: Deployment, **fields) -> Build:
    """A pending build of `deployment`, not stored yet; `fields` (its source) override the
    deployment's subdomain, source type, Dockerfile path and build args."""
    defaults = {name: getattr(deployment, name) for name in DEPLOYMENT_SOURCE}
    return Build(
        id=new_id(),
        deployment_id=deployment.id,
        tenant=deployment.tenant,
        number=0,
        status=BuildStatus.PENDING.value,
        created_at=utc_now(),
        timeout_s=deployment.build_timeout_s,
        **{**defaults, **fields},
    )
