"""A WebSocket handshake the app refuses is answered as the HTTP error it is (401, 404, 429 with
`Retry-After`, 503…) with the standard error body, where the server offers ASGI's WebSocket Denial
Response extension (uvicorn does). Falcon itself can only close a refused handshake with
3000 + the status, which a server answers with a bare 403 whatever the reason; under a server
without the extension that stays so."""

from __future__ import annotations

from typing import Any

import falcon
from falcon.asgi import WebSocket

from api.errors import error_body

EXTENSION = "websocket.http.response"
# Where the refusal waits in the connection's ASGI scope for the wrapper to send it.
REFUSAL = "buildfarm.ws_refusal"


async def refuse_handshake(
    req: falcon.Request,
    resp: falcon.Response | None,
    exc: falcon.HTTPError,
    params: dict,
    ws: WebSocket | None = None,
) -> None:
    """Falcon's error handler for HTTPError, WebSocket or not: a handshake not accepted yet
    leaves its answer for DenialResponses; then Falcon's own handling goes on (re-raised: the
    HTTP response, or the close code)."""
    if ws is not None and not ws.ready and not ws.closed:
        headers = [(b"content-type", falcon.MEDIA_JSON.encode())]
        headers += [(name.lower().encode(), value.encode()) for name, value in (exc.headers or {}).items()]
        req.scope[REFUSAL] = (falcon.http_status_to_code(exc.status), headers, error_body(exc))
    raise exc


class DenialResponses:
    """The ASGI app around Falcon's: a handshake closed before it was accepted, with a refusal
    left by refuse_handshake, is answered with that refusal as an HTTP response instead."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket" or EXTENSION not in scope.get("extensions", {}):
            return await self.app(scope, receive, send)
        accepted = False

        async def answer(message: dict) -> None:
            nonlocal accepted
            accepted = accepted or message["type"] == "websocket.accept"
            refusal = scope.get(REFUSAL)
            if message["type"] == "websocket.close" and not accepted and refusal is not None:
                status, headers, body = refusal
                await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
                await send({"type": "websocket.http.response.body", "body": body, "more_body": False})
                return
            await send(message)

        await self.app(scope, receive, answer)
