"""Bearer-token authentication of every route (HTTP and WebSocket), decided after routing.

The decision is taken on the resource a request reached, not on its raw path (`//api/v1/…`,
`/api/v1/deployments/`: whatever spelling the router accepts reaches the same resource), and it
denies by default: a resource answers without a token only if its class says `public = True`
(the dashboard, health, metrics — which has its own token, the OpenAPI description, and the
push webhooks, which prove themselves by their deployment's secret)."""

from __future__ import annotations

import falcon

from api.store import Principal, RecordStore
from common.records.call import Call

API_PREFIX = "/api/v1"
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


def is_public(resource: object) -> bool:
    return getattr(resource, "public", False) is True


class AuthMiddleware:
    def __init__(self, store: RecordStore) -> None:
        self.store = store

    async def _authenticate(self, req: falcon.Request, token: str | None, read: Call | None = None) -> None:
        """Sets the request's principal; with `read`, the resource's first read made in the same
        round trip, its result in `req.context.read_along` (left unread for a token refused)."""
        if token is None:
            raise _unauthorized("Missing bearer token: send 'Authorization: Bearer <token>'")
        if read is None:
            principal, req.context.read_along = await self.store.authenticate(token), None
        else:
            principal, req.context.read_along = await self.store.authenticate_with(token, read)
        if principal is None:
            raise _unauthorized("Invalid or revoked token")
        req.context.principal = principal

    async def process_resource(self, req: falcon.Request, resp: falcon.Response, resource, params) -> None:
        if not is_public(resource):
            # A resource may name its first read (`read_along(req, params)`, a Call of one read
            # command), made with the token check: a request costs one round trip, not two.
            read_along = getattr(resource, "read_along", None)
            read = read_along(req, params) if read_along is not None else None
            await self._authenticate(req, bearer_token(req), read)

    async def process_resource_ws(self, req: falcon.Request, ws, resource, params) -> None:
        if not is_public(resource):
            await self._authenticate(req, bearer_token(req) or subprotocol_token(req))


def principal(req: falcon.Request) -> Principal:
    return req.context.principal
