"""POST …/builds/{build_id}/retry: a new build of exactly the same source — the same commit
(git) or the same uploaded archive and inline Dockerfile — whatever the deployment got since.
The old build keeps its record."""

from __future__ import annotations

import falcon

from api.errors import conflict
from api.queue import BuildQueue
from api.resources.builds import find_build
from api.resources.deploy import pending_build
from api.resources.deployments import find_deployment
from api.store import RecordStore


class RetryResource:
    def __init__(self, store: RecordStore, queue: BuildQueue) -> None:
        self.store = store
        self.queue = queue

    async def on_post(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        old = await find_build(self.store, req, deployment_id, build_id)
        if not old.commit_sha:
            raise conflict("This build never resolved its commit, so there is no exact source to retry")
        build = pending_build(
            deployment,
            subdomain=old.subdomain,
            source_type=old.source_type,
            dockerfile_path=old.dockerfile_path,
            repo_url=old.repo_url,
            branch=old.branch,
            commit_sha=old.commit_sha,
            inline_dockerfile=old.inline_dockerfile,
        )
        await self.queue.submit(self.store, build)
        resp.status = falcon.HTTP_202
        resp.location = f"{req.path.rsplit('/', 2)[0]}/{build.id}"
        resp.media = build.to_public()
