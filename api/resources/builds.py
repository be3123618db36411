"""Builds of a deployment: list, get, cancel."""

from __future__ import annotations

import falcon

from api.errors import conflict, not_found
from api.paging import next_link, paging_params
from api.resources.deployments import find_deployment
from api.store import RecordStore
from api.validation import is_uuid
from common.models import Build, BuildStatus, utc_now

STATUSES = [s.value for s in BuildStatus]


async def find_build(store: RecordStore, req: falcon.Request, deployment_id: str, build_id: str) -> Build:
    deployment = await find_deployment(store, req, deployment_id)
    build = await store.get_build(deployment.id, build_id) if is_uuid(build_id) else None
    if build is None:
        raise not_found("Build not found")
    return build


class BuildsResource:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        limit, before = paging_params(req)
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"Invalid 'status': use one of {', '.join(STATUSES)}")
        builds, next_cursor = await self.store.list_builds(deployment.id, status, limit, before)
        resp.media = [build.to_public() for build in builds]
        if next_cursor is not None:
            resp.append_link(next_link(req, limit, next_cursor), "next")

    async def on_get_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        resp.media = (await find_build(self.store, req, deployment_id, build_id)).to_public()


class CancelResource:
    """POST …/builds/{id}/cancel: a pending build is cancelled at once; a running build is
    asked to stop, and its worker ends it as cancelled."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def on_post(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        build = await find_build(self.store, req, deployment_id, build_id)
        who = req.context.principal.token_name
        while True:
            if build.status == BuildStatus.CANCELLED:
                break
            if BuildStatus(build.status).is_terminal:
                raise conflict(f"Build already finished with status '{build.status}'")
            if build.status == BuildStatus.PENDING:
                fields = {"finished_at": utc_now(), "error": f"cancelled by {who} before it started"}
                result = await self.store.transition(
                    build, BuildStatus.CANCELLED, fields, expected=frozenset({BuildStatus.PENDING})
                )
                if result.ok:
                    break
            else:
                await self.store.request_cancel(build, who)
                break
            build = await find_build(self.store, req, deployment_id, build_id)
        build = await find_build(self.store, req, deployment_id, build_id)
        resp.status = falcon.HTTP_200 if build.status == BuildStatus.CANCELLED else falcon.HTTP_202
        resp.media = build.to_public()
