"""`limit` + cursor paging for list endpoints, with the next page in a Link header."""

from __future__ import annotations

from urllib.parse import urlencode

import falcon

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


def paging_params(req: falcon.Request) -> tuple[int, int | None]:
    """(limit, cursor): the cursor is an opaque integer handed out in the previous Link."""
    limit = req.get_param_as_int("limit", min_value=1, max_value=MAX_LIMIT) or DEFAULT_LIMIT
    return limit, req.get_param_as_int("cursor", min_value=1)


def link_next_page(req: falcon.Request, resp: falcon.Response, limit: int, cursor: int | None) -> None:
    if cursor is not None:
        params = {k: v for k, v in req.params.items() if k not in ("limit", "cursor")}
        params.update(limit=limit, cursor=cursor)
        resp.append_link(f"{req.path}?{urlencode(params)}", "next")
