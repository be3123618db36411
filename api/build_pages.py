"""Pages of a deployment's builds, as the JSON a client gets, kept by each API process while the
deployment's builds do not change.

CI systems and the dashboard ask for the same page again and again, and most of the time
nothing changed in between. Every change to a deployment's builds raises its builds revision
(common/records/scripts.py, _BUILDS_CHANGED), so a page encoded before is served again while
the revision is the one it was read at. That revision is read with the request's token, in
the same round trip (api/auth.py), so a page kept costs no read of its own; a page read
carries the revision it was read at (the page script reads both in one atomic step)."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from api.errors import not_found
from api.store import RecordStore
from api.validation import is_uuid
from common import contract
from common.records import builds
from common.records.builds import BuildsRevision
from common.records.call import Call

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
        self,
        tenant: str,
        current: BuildsRevision | None,
        query: tuple[str, str | None, int, int | None],
    ) -> tuple[bytes, int | None]:
        """The JSON of a page of the deployment's builds (`query`: the deployment, the status, the
        limit, the cursor) and the next cursor. `current` is the deployment's tenant and builds
        revision, read with the request's token (api/auth.py): 404 if the deployment is missing
        or another tenant's. A page kept at the current revision costs no more; another is read
        in one round trip."""
        if current is None or current.tenant != tenant:
            raise not_found("Deployment not found")
        kept = self._pages.get(query)
        if kept is not None and kept.revision == current.revision:
            self._pages.move_to_end(query)
            return kept.body, kept.cursor
        page = await self.store.list_builds(tenant, *query)
        if page is None:  # deleted meanwhile
            raise not_found("Deployment not found")
        body = contract.encode(page.builds)
        self._keep(query, _Page(page.revision, body, page.cursor))
        return body, page.cursor

    @staticmethod
    def read_along(deployment_id: str) -> Call[BuildsRevision | None] | None:
        """What page() needs to know, to be read with the request's token (api/auth.py)."""
        return builds.builds_revision(deployment_id) if is_uuid(deployment_id) else None

    def _keep(self, key: tuple, page: _Page) -> None:
        if (old := self._pages.pop(key, None)) is not None:
            self._bytes -= len(old.body)
        self._pages[key] = page
        self._bytes += len(page.body)
        while self._bytes > self.max_bytes and len(self._pages) > 1:
            _, dropped = self._pages.popitem(last=False)
            self._bytes -= len(dropped.body)
