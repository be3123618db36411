"""POST /deployments/{id}/deploy: a new pending build, queued for the workers."""

from __future__ import annotations

import logging
import re

import falcon

from api.errors import conflict, not_found
from api.queue import BuildQueue
from api.resources.deployments import find_deployment
from api.store import RecordStore, new_id
from api.validation import Field, check_commit_sha, read_json, validate
from common.config import Config
from common.models import Build, BuildStatus, Deployment, SourceType, utc_now

logger = logging.getLogger("buildfarm.api")

DEPLOY_SCHEMA = {"commit_sha": Field(str, check=check_commit_sha)}
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class DeployResource:
    def __init__(self, config: Config, store: RecordStore, queue: BuildQueue) -> None:
        self.config = config
        self.store = store
        self.queue = queue

    async def on_post(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        body = validate(await read_json(req, self.config.max_json_bytes, allow_empty=True), DEPLOY_SCHEMA)
        build = self._new_build(deployment, body)
        key = req.get_header("Idempotency-Key")
        if key is not None:
            if not _IDEMPOTENCY_KEY.match(key):
                raise falcon.HTTPBadRequest(
                    description="Idempotency-Key must be 1-200 printable ASCII characters"
                )
            earlier = await self.store.claim_idempotency_key(deployment, key, build.id)
            if earlier is not None:
                # A retried request: answer with the build the first one created.
                found = await self.store.get_build(deployment.id, earlier)
                if found is None:
                    raise conflict("A request with this Idempotency-Key is still being processed")
                self._respond(req, resp, found)
                return
        if await self.store.create_build(build) is None:
            raise not_found("Deployment not found")
        try:
            self.queue.enqueue(build.id)
        except Exception:
            logger.exception("could not queue build %s", build.id)
            fields = {"finished_at": utc_now(), "error": "The build could not be queued: try again"}
            await self.store.transition(
                build, BuildStatus.FAILED, fields, expected=frozenset({BuildStatus.PENDING})
            )
            raise falcon.HTTPServiceUnavailable(
                description="The build queue is unavailable: try again"
            ) from None
        if deployment.supersede_queued:
            await self.store.supersede_queued(build)
        self._respond(req, resp, build)

    def _respond(self, req: falcon.Request, resp: falcon.Response, build: Build) -> None:
        resp.status = falcon.HTTP_202
        resp.location = f"{req.path.rsplit('/', 1)[0]}/builds/{build.id}"
        resp.media = build.to_public()

    def _new_build(self, deployment: Deployment, body: dict) -> Build:
        build = Build(
            id=new_id(),
            deployment_id=deployment.id,
            tenant=deployment.tenant,
            number=0,
            status=BuildStatus.PENDING.value,
            subdomain=deployment.subdomain,
            source_type=deployment.source_type,
            dockerfile_path=deployment.dockerfile_path,
            created_at=utc_now(),
            timeout_s=deployment.build_timeout_s,
        )
        if deployment.source_type == SourceType.ARCHIVE:
            if "commit_sha" in body:
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
            build.commit_sha = body.get("commit_sha")
        return build
