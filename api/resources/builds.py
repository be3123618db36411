"""Builds of a deployment: list, get, cancel, retry."""

from __future__ import annotations

import falcon

from api.auth import principal
from api.build_pages import BuildPages
from api.errors import conflict
from api.lookups import find_build, find_deployment, owned_build
from api.paging import link_next_page, paging_params
from api.store import RecordStore
from api.submission import BuildSubmission, render_queued
from api.validation import is_uuid
from common.contract import STATUSES, public_build
from common.integrations import CANCELLED
from common.models import BuildStatus, ErrorKind, utc_now
from common.records import builds
from common.records.call import Call


class BuildsResource:
    def __init__(self, store: RecordStore, submission: BuildSubmission) -> None:
        self.store = store
        self.submission = submission
        self.pages = BuildPages(store)

    def read_along(self, req: falcon.Request, params: dict) -> Call | None:
        """The first read of a GET, made with the token check (api/auth.py): the build, or the
        deployment's builds revision for a page of them."""
        if req.method != "GET":
            return None
        if "build_id" in params:
            return builds.load(params["build_id"]) if is_uuid(params["build_id"]) else None
        return self.pages.read_along(params["deployment_id"])

    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        limit, before = paging_params(req)
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"Invalid 'status': use one of {', '.join(STATUSES)}")
        query = (deployment_id, status, limit, before)
        current = req.context.read_along
        resp.data, next_cursor = await self.pages.page(principal(req).tenant, current, query)
        resp.content_type = falcon.MEDIA_JSON
        link_next_page(req, resp, limit, next_cursor)

    async def on_get_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        build = await owned_build(self.store, principal(req).tenant, deployment_id, req.context.read_along)
        position = await self.store.queue_position(build) if build.status == BuildStatus.PENDING else None
        resp.media = public_build(build, position)

    async def on_post_cancel(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        """A pending build is cancelled at once; a running build is asked to stop, and its worker
        ends it as cancelled."""
        tenant, who = principal(req).tenant, principal(req).token_name
        build = await find_build(self.store, tenant, deployment_id, build_id)
        # A worker may claim the pending build meanwhile: it is then read again, and stopped as running.
        while build.status == BuildStatus.PENDING:
            fields = {
                "finished_at": utc_now(),
                "error": f"cancelled by {who} before it started",
                "error_kind": ErrorKind.CANCELLED.value,
            }
            pending = frozenset({BuildStatus.PENDING})
            result = await self.store.transition(
                build.id, build.deployment_id, BuildStatus.CANCELLED, fields, expected=pending
            )
            if result.ok:
                await self.submission.announce(build.id, build.deployment_id, CANCELLED)
                break
            build = await find_build(self.store, tenant, deployment_id, build_id)
        if build.status == BuildStatus.BUILDING:
            await self.store.request_cancel(build, who)
        elif build.status != BuildStatus.CANCELLED and BuildStatus(build.status).is_terminal:
            raise conflict(f"Build already finished with status '{build.status}'")
        build = await find_build(self.store, tenant, deployment_id, build_id)
        resp.status = falcon.HTTP_200 if build.status == BuildStatus.CANCELLED else falcon.HTTP_202
        resp.media = public_build(build)

    async def on_post_retry(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        """A new build of exactly the same source (api/submission.py); the old build keeps its record."""
        tenant = principal(req).tenant
        deployment = await find_deployment(self.store, tenant, deployment_id)
        old = await find_build(self.store, tenant, deployment_id, build_id)
        render_queued(resp, await self.submission.retry(deployment, old))
