"""Builds of a deployment: list, get, cancel."""

from __future__ import annotations

import falcon

from api.auth import principal
from api.errors import conflict
from api.lookups import find_build, find_builds
from api.paging import next_link, paging_params
from api.store import RecordStore
from common.contract import STATUSES, public_build
from common.models import BuildStatus, utc_now


class BuildsResource:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        limit, before = paging_params(req)
        status = req.get_param("status")
        if status is not None and status not in STATUSES:
            raise falcon.HTTPBadRequest(description=f"Invalid 'status': use one of {', '.join(STATUSES)}")
        tenant = principal(req).tenant
        resp.media, next_cursor = await find_builds(self.store, tenant, deployment_id, status, limit, before)
        if next_cursor is not None:
            resp.append_link(next_link(req, limit, next_cursor), "next")

    async def on_get_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        build = await find_build(self.store, principal(req).tenant, deployment_id, build_id)
        resp.media = public_build(build)


class CancelResource:
    """POST …/builds/{id}/cancel: a pending build is cancelled at once; a running build is
    asked to stop, and its worker ends it as cancelled."""

    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def on_post(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        tenant, who = principal(req).tenant, principal(req).token_name
        build = await find_build(self.store, tenant, deployment_id, build_id)
        while True:
            if build.status == BuildStatus.CANCELLED:
                break
            if BuildStatus(build.status).is_terminal:
                raise conflict(f"Build already finished with status '{build.status}'")
            if build.status == BuildStatus.PENDING:
                fields = {"finished_at": utc_now(), "error": f"cancelled by {who} before it started"}
                pending = frozenset({BuildStatus.PENDING})
                result = await self.store.transition(
                    build.id, build.deployment_id, BuildStatus.CANCELLED, fields, expected=pending
                )
                if result.ok:
                    break
            else:
                await self.store.request_cancel(build, who)
                break
            build = await find_build(self.store, tenant, deployment_id, build_id)
        build = await find_build(self.store, tenant, deployment_id, build_id)
        resp.status = falcon.HTTP_200 if build.status == BuildStatus.CANCELLED else falcon.HTTP_202
        resp.media = public_build(build)
