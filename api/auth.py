"""Bearer-token authentication for every /api/v1 route (HTTP and WebSocket)."""

from __future__ import annotations

import falcon

from api.store import Principal, RecordStore

API_PREFIX = "/api/v1"
PUBLIC_PATHS = frozenset({f"{API_PREFIX}/openapi.json"})
# Git push webhooks carry no bearer token: they prove themselves by their deployment's secret.
PUBLIC_PREFIXES = (f"{API_PREFIX}/webhooks/",)
# Browsers cannot set headers on a WebSocket, so a client may offer the subprotocols
# "bearer" and the token itself; the server then accepts the "bearer" subprotocol.
WS_BEARER_SUBPROTOCOL = "bearer"


def _unauthorized(message: str) -> falcon.HTTPUnauthorized:
    return falcon.HTTPUnauthorized(description=message, challenges=['Bearer realm="buildfarm"'])


def bearer_token(req: falcon.Request) -> str | None:
    scheme, _, token = (req.get_header("Authorization") or "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def subprotocol_token(req: falcon.Request) -> str | None:
    offered = [p.strip() for p in (req.get_header("Sec-WebSocket-Protocol") or "").split(",")]
    if len(offered) == 2 and offered[0] == WS_BEARER_SUBPROTOCOL and offered[1]:
        return offered[1]
    return None


class AuthMiddleware:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    def _needs_auth(self, req: falcon.Request) -> bool:
        path = req.path
        if not path.startswith(API_PREFIX + "/") or path.startswith(PUBLIC_PREFIXES):
            return False
        return path not in PUBLIC_PATHS

    async def _authenticate(self, req: falcon.Request, token: str | None) -> None:
        if token is None:
            raise _unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'")
        principal = await self.store.authenticate(token)
        if principal is None:
            raise _unauthorized("Invalid or revoked token")
        req.context.principal = principal

    async def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self._needs_auth(req):
            await self._authenticate(req, bearer_token(req))

    async def process_request_ws(self, req: falcon.Request, ws) -> None:
        if self._needs_auth(req):
            await self._authenticate(req, bearer_token(req) or subprotocol_token(req))


def principal(req: falcon.Request) -> Principal:
    return req.context.principal
