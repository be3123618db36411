"""POST /deployments/{id}/deploy: a new pending build, queued for the workers. The push
webhooks (api/resources/webhooks.py) start their builds through the same new_build and
start_build."""

from __future__ import annotations

import functools
import re
from collections.abc import Awaitable, Callable

import falcon

from api.errors import conflict
from api.queue import BuildQueue
from api.resources.deployments import find_deployment
from api.store import RecordStore, new_id
from api.validation import Field, check_commit_sha, read_json, validate
from common.config import Config
from common.models import Build, BuildStatus, Deployment, SourceType, utc_now

DEPLOY_SCHEMA = {"commit_sha": Field(str, check=check_commit_sha)}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")

# Records a new build's id under a request's key (Idempotency-Key, webhook delivery id) and
# returns the build id an earlier request with the same key recorded, if any.
Claim = Callable[[str], Awaitable[str | None]]


class DeployResource:
    def __init__(self, config: Config, store: RecordStore, queue: BuildQueue) -> None:
        self.config = config
        self.store = store
        self.queue = queue

    async def on_post(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        body = validate(await read_json(req, self.config.max_json_bytes, allow_empty=True), DEPLOY_SCHEMA)
        build = new_build(deployment, body.get("commit_sha"))
        claim = None
        key = req.get_header("Idempotency-Key")
        if key is not None:
            if not _IDEMPOTENCY_KEY.match(key):
                raise falcon.HTTPBadRequest(
                    description="Idempotency-Key must be 1-200 printable ASCII characters"
                )
            claim = functools.partial(self.store.claim_idempotency_key, deployment, key)
        self._respond(req, resp, await start_build(self.store, self.queue, deployment, build, claim))

    def _respond(self, req: falcon.Request, resp: falcon.Response, build: Build) -> None:
        resp.status = falcon.HTTP_202
        resp.location = f"{req.path.rsplit('/', 1)[0]}/builds/{build.id}"
        resp.media = build.to_public()


def pending_build(deployment: Deployment, **fields) -> Build:
    """A pending build of `deployment`, not stored yet; `fields` (its source) override the
    deployment's subdomain, source type and Dockerfile path."""
    defaults = {
        "subdomain": deployment.subdomain,
        "source_type": deployment.source_type,
        "dockerfile_path": deployment.dockerfile_path,
    }
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


def new_build(deployment: Deployment, commit_sha: str | None = None) -> Build:
    """A pending build (not stored yet): git, of `commit_sha` or else the branch tip; archive,
    of the last upload (422 with a commit, 409 before any upload)."""
    build = pending_build(deployment)
    if deployment.source_type == SourceType.ARCHIVE:
        if commit_sha is not None:
            raise falcon.HTTPUnprocessableEntity(
                description="Archive deployments build their uploaded archive: no 'commit_sha'"
            )
        if not deployment.archive_sha256:
            raise conflict("No archive uploaded yet: POST one to /upload first")
        build.commit_sha = deployment.archive_sha256
        build.inline_dockerfile = deployment.archive_has_dockerfile
    else:
        build.repo_url = deployment.repo_url
        build.branch = deployment.branch
        build.commit_sha = commit_sha
    return build


async def start_build(
    store: RecordStore, queue: BuildQueue, deployment: Deployment, build: Build, claim: Claim | None = None
) -> Build:
    """Stores and queues `build` (404 if the deployment went, 503 if the queue is down) and
    cancels older queued builds when the deployment supersedes them. With `claim`, a request
    repeating an earlier one's key gets the build the earlier one created instead."""
    if claim is not None:
        earlier = await claim(build.id)
        if earlier is not None:
            found = await store.get_build(deployment.id, earlier)
            if found is None:
                raise conflict("An earlier request with this key is still being processed")
            return found
    await queue.submit(store, build)
    if deployment.supersede_queued:
        await store.supersede_queued(build)
    return build
