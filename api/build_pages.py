"""Pages of a deployment's builds, as the JSON a client gets, kept by each API process while the
deployment's builds do not change.

CI systems and the dashboard ask for the same page again and again, and most of the time
nothing changed in between. Every change to a deployment's builds raises its builds revision
(common/records/scripts.py, _BUILDS_CHANGED), so a page encoded before is served again while
the revision is the one it was read at: one small read of Redis instead of reading and
encoding every build of the page. The page script reads the revision in the same atomic step
as the page."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from api.errors import not_found
from api.store import RecordStore
from api.validation import is_uuid
from common import contract

# The JSON of the pages one API process keeps, at most (the least recently served go first).
MAX_KEPT_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class _Page:
    revision: int
    body: bytes
    cursor: int | None


class BuildPages:
    def __init__(self, store: RecordStore, max_bytes: int = MAX_KEPT_BYTES) -> None:
        self.store = store
        self.max_bytes = max_bytes
        self._pages: OrderedDict[tuple, _Page] = OrderedDict()
        self._bytes = 0

    async def page(
        self, tenant: str, deployment_id: str, status: str | None, limit: int, before: int | None
    ) -> tuple[bytes, int | None]:
        """The JSON of a page of the deployment's builds and the next cursor; 404 if the deployment
        is missing or another tenant's. A page first asked for is read in one round trip; a page
        kept is checked in one, and read again only if the deployment's builds changed."""
        if not is_uuid(deployment_id):
            raise not_found("Deployment not found")
        key = (deployment_id, status, limit, before)
        kept = self._pages.get(key)
        if kept is not None:
            revision = await self.store.builds_revision(tenant, deployment_id)
            if revision is None:
                raise not_found("Deployment not found")
            if revision == kept.revision:
                self._pages.move_to_end(key)
                return kept.body, kept.cursor
        page = await self.store.list_builds(tenant, deployment_id, status, limit, before)
        if page is None:
            raise not_found("Deployment not found")
        body = contract.encode(page.builds)
        self._keep(key, _Page(page.revision, body, page.cursor))
        return body, page.cursor

    def _keep(self, key: tuple, page: _Page) -> None:
        if (old := self._pages.pop(key, None)) is not None:
            self._bytes -= len(old.body)
        self._pages[key] = page
        self._bytes += len(page.body)
        while self._bytes > self.max_bytes and len(self._pages) > 1:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped.body)
