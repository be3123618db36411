"""POST …/builds/{build_id}/retry: a new build of exactly the same source (api/submission.py);
the old build keeps its record."""

from __future__ import annotations

import falcon

from api.auth import principal
from api.lookups import find_build, find_deployment
from api.store import RecordStore
from api.submission import BuildSubmission, render_queued


class RetryResource:
    def __init__(self, store: RecordStore, submission: BuildSubmission) -> None:
        self.store = store
        self.submission = submission

    async def on_post(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        tenant = principal(req).tenant
        deployment = await find_deployment(self.store, tenant, deployment_id)
        old = await find_build(self.store, tenant, deployment_id, build_id)
        build = await self.submission.retry(deployment, old)
        render_queued(resp, build)
