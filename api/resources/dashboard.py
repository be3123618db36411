"""The web dashboard: the static page and its assets from api/static/, served without a token
(the page asks for one and calls the API with it) under a strict Content-Security-Policy."""

from __future__ import annotations

import re
from pathlib import Path

import falcon

from api.errors import not_found

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}
# `connect-src 'self'` covers ws:/wss: to the same host in current browsers but not in all:
# the page's own host is named for them, when the Host header is a plain host[:port].
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


def content_security_policy(host: str | None) -> str:
    sockets = f" ws://{host} wss://{host}" if host and _HOST.match(host) else ""
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        f"connect-src 'self'{sockets}; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


class DashboardResource:
    """GET / is the page (hash routing: every view lives at /); GET /static/{name} its files."""

    public = True  # the page asks for a token and calls the API with it

    def __init__(self) -> None:
        # Every servable file, read once: a missing folder (a package installed without its data
        # files) stops the app at start rather than serving a broken page.
        self.assets = {
            path.name: (path.read_bytes(), CONTENT_TYPES[path.suffix])
            for path in sorted(STATIC_DIR.iterdir())
            if path.is_file() and path.suffix in CONTENT_TYPES
        }
        if "index.html" not in self.assets:
            raise RuntimeError(f"the dashboard's index.html is missing from {STATIC_DIR}")

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self._send(req, resp, "index.html")

    async def on_get_asset(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        if name not in self.assets:
            raise not_found("No such file")
        self._send(req, resp, name)

    def _send(self, req: falcon.Request, resp: falcon.Response, name: str) -> None:
        resp.data, resp.content_type = self.assets[name]
        resp.set_header("Cache-Control", "no-cache")
        resp.set_header("X-Content-Type-Options", "nosniff")
        resp.set_header("Referrer-Policy", "no-referrer")
        resp.set_header("X-Frame-Options", "DENY")
        resp.set_header("Content-Security-Policy", content_security_policy(req.get_header("Host")))
