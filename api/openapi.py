"""The OpenAPI 3 description of the API, served at /api/v1/openapi.json.

A test walks the app's routes and fails if a route or method is missing here.
"""

from __future__ import annotations

import falcon
import msgspec

from api.paging import DEFAULT_LIMIT, MAX_LIMIT
from common import contract

UUID = {"type": "string", "format": "uuid"}
REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _error(description: str) -> dict:
    return {"description": description, "content": _json(_ref("Error"))}


ERRORS = {
    "400": _error("Malformed request"),
    "401": _error("Missing or invalid bearer token"),
    "404": _error("Not found"),
    "405": _error("Method not allowed"),
    "409": _error("Conflict with the current state"),
    "413": _error("Body too large"),
    "415": _error("Unsupported media type"),
    "422": _error("Invalid field"),
    "500": _error("Internal error"),
    "503": _error("A service the API needs is unavailable"),
}


def _op(summary: str, ok: dict, *errors: str, body: dict | None = None, params: list | None = None) -> dict:
    responses = dict(ok)
    for code in ("401", "404", *errors):
        responses[code] = ERRORS[code]
    op = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = body
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": UUID}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


PAGING = [
    _query(
        "limit",
        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
        "Page size",
    ),
    _query("cursor", {"type": "integer", "minimum": 1}, "From the previous page's Link: rel=next"),
]
DEPLOYMENT_ID = _path_param("deployment_id")
BUILD_ID = _path_param("build_id")
LIST_HEADERS = {
    "Link": {"description": '<url>; rel="next" when more items follow', "schema": {"type": "string"}}
}

# The bodies, derived from the contract's Structs.
_, SCHEMAS = msgspec.json.schema_components(contract.SCHEMAS, ref_template=REF)

DASHBOARD_HEADERS = {
    "Content-Security-Policy": {
        "description": "Only the page's own scripts, styles and API",
        "schema": {"type": "string"},
    }
}


def _header(name: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    schema = schema or {"type": "string", "maxLength": 200}
    return {"name": name, "in": "header", "required": required, "schema": schema, "description": description}


def _webhook(summary: str, ok: dict, headers: list[dict]) -> dict:
    """A push webhook (docs/WEBHOOKS.md): no bearer token, the deployment's secret instead."""
    op = _op(
        summary,
        {
            **ok,
            "202": {
                "description": "A build of the pushed commit (a redelivery: the build it created), "
                "or {status: ignored} for other events, branches, tags and branch deletions",
                "content": _json({"anyOf": [_ref("Build"), _ref("WebhookAck")]}),
            },
        },
        "400",
        "409",
        "413",
        "415",
        "422",
        "503",
        body={"required": True, "content": _json(_ref("PushPayload"))},
        params=headers,
    )
    op["security"] = []
    op["responses"]["401"] = _error(
        "Missing secret, or it does not match (also: unknown id, archive deployment)"
    )
    return op


PATHS = {
    "/": {
        "get": {
            "summary": "The web dashboard (its views are hash routes: #/deployments, …)",
            "security": [],
            "responses": {
                "200": {
                    "description": "The page",
                    "headers": DASHBOARD_HEADERS,
                    "content": {"text/html": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/static/{name}": {
        "parameters": [
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "example": "app.js",
            }
        ],
        "get": {
            "summary": "A file of the dashboard (script, style sheet, icon)",
            "security": [],
            "responses": {
                "200": {
                    "description": "The file",
                    "headers": DASHBOARD_HEADERS,
                    "content": {
                        "text/javascript": {"schema": {"type": "string"}},
                        "text/css": {"schema": {"type": "string"}},
                        "image/svg+xml": {"schema": {"type": "string"}},
                    },
                },
                "404": ERRORS["404"],
            },
        },
    },
    "/healthz": {
        "get": {"summary": "Process is up", "security": [], "responses": {"200": {"description": "OK"}}}
    },
    "/readyz": {
        "get": {
            "summary": "Redis and S3 reachable",
            "security": [],
            "responses": {"200": {"description": "Ready"}, "503": {"description": "Not ready"}},
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text format): HTTP requests by route, queue depth",
            "security": [],
            "responses": {
                "200": {
                    "description": "The metrics of every API process",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        }
    },
    "/api/v1/openapi.json": {
        "get": {
            "summary": "This document",
            "security": [],
            "responses": {"200": {"description": "OpenAPI 3"}},
        }
    },
    "/api/v1/deployments": {
        "get": _op(
            "List deployments, newest first",
            {
                "200": {
                    "description": "A page",
                    "headers": LIST_HEADERS,
                    "content": _json({"type": "array", "items": _ref("Deployment")}),
                }
            },
            "400",
            params=PAGING,
        ),
        "post": _op(
            "Create a deployment (git or archive)",
            {"201": {"description": "Created", "content": _json(_ref("Deployment"))}},
            "400",
            "409",
            "413",
            "415",
            "422",
            body={"required": True, "content": _json(_ref("NewDeployment"))},
        ),
    },
    "/api/v1/deployments/{deployment_id}": {
        "parameters": [DEPLOYMENT_ID],
        "get": _op(
            "Get a deployment",
            {"200": {"description": "The deployment", "content": _json(_ref("Deployment"))}},
        ),
        "delete": _op(
            "Delete a deployment with its builds; refused (409) while a build is pending or building",
            {"204": {"description": "Deleted"}},
            "409",
        ),
    },
    "/api/v1/deployments/{deployment_id}/upload": {
        "parameters": [DEPLOYMENT_ID],
        "post": _op(
            "Upload the source archive (.tar.gz) and optionally an inline Dockerfile",
            {
                "200": {
                    "description": "Stored",
                    "content": _json(_ref("Upload")),
                }
            },
            "400",
            "409",
            "413",
            "415",
            body={
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["archive"],
                            "properties": {
                                "archive": {"type": "string", "format": "binary"},
                                "dockerfile": {"type": "string", "format": "binary"},
                            },
                        }
                    }
                },
            },
        ),
    },
    "/api/v1/deployments/{deployment_id}/deploy": {
        "parameters": [DEPLOYMENT_ID],
        "post": _op(
            "Trigger a build (git: branch tip or the given commit; archive: the last upload)",
            {"202": {"description": "Queued", "content": _json(_ref("Build"))}},
            "400",
            "409",
            "413",
            "415",
            "422",
            "503",
            body={"required": False, "content": _json(_ref("DeployRequest"))},
            params=[
                {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "maxLength": 200},
                    "description": "A retried request with the same key returns the same build (24 h)",
                }
            ],
        ),
    },
    "/api/v1/deployments/{deployment_id}/builds": {
        "parameters": [DEPLOYMENT_ID],
        "get": _op(
            "List builds, newest first",
            {
                "200": {
                    "description": "A page",
                    "headers": LIST_HEADERS,
                    "content": _json({"type": "array", "items": _ref("Build")}),
                }
            },
            "400",
            params=[
                *PAGING,
                _query(
                    "status",
                    {"type": "string", "enum": list(contract.STATUSES)},
                    "Only builds in this status",
                ),
            ],
        ),
    },
    "/api/v1/deployments/{deployment_id}/builds/{build_id}": {
        "parameters": [DEPLOYMENT_ID, BUILD_ID],
        "get": _op("Get a build", {"200": {"description": "The build", "content": _json(_ref("Build"))}}),
    },
    "/api/v1/deployments/{deployment_id}/builds/{build_id}/logs": {
        "parameters": [DEPLOYMENT_ID, BUILD_ID],
        "get": _op(
            "The build's log as plain text (live while building, archived afterwards)",
            {
                "200": {
                    "description": "The docker build output",
                    "content": {"text/plain": {"schema": {"type": "string"}}},
                }
            },
        ),
    },
    "/api/v1/deployments/{deployment_id}/builds/{build_id}/logs/stream": {
        "parameters": [DEPLOYMENT_ID, BUILD_ID],
        "get": _op(
            "WebSocket: one text message per log line from the first (or after `after`), "
            "then live; closed with 1000 when the build ends. Auth: the Authorization header, "
            "or the subprotocols 'bearer' and the token.",
            {"101": {"description": "Switching protocols to WebSocket"}},
            "405",
            params=[_query("after", {"type": "integer", "minimum": 0}, "Resume after this many lines")],
        ),
    },
    "/api/v1/deployments/{deployment_id}/builds/{build_id}/retry": {
        "parameters": [DEPLOYMENT_ID, BUILD_ID],
        "post": _op(
            "Build exactly the same source again (same commit, or same archive and inline Dockerfile)",
            {"202": {"description": "Queued", "content": _json(_ref("Build"))}},
            "409",
            "503",
        ),
    },
    "/api/v1/deployments/{deployment_id}/builds/{build_id}/cancel": {
        "parameters": [DEPLOYMENT_ID, BUILD_ID],
        "post": _op(
            "Cancel a build: pending at once (200), building asked to stop (202)",
            {
                "200": {"description": "Cancelled", "content": _json(_ref("Build"))},
                "202": {"description": "Stop requested", "content": _json(_ref("Build"))},
            },
            "409",
        ),
    },
    "/api/v1/deployments/{deployment_id}/webhook-secret": {
        "parameters": [DEPLOYMENT_ID],
        "post": _op(
            "Replace a git deployment's webhook secret; the new one is shown once, the old one "
            "stops working at once",
            {
                "200": {
                    "description": "The new secret",
                    "content": _json(_ref("WebhookSecret")),
                }
            },
            "409",
        ),
    },
    "/api/v1/webhooks/github/{deployment_id}": {
        "parameters": [DEPLOYMENT_ID],
        "post": _webhook(
            "GitHub push webhook: a push to the deployment's branch builds the pushed commit",
            {"200": {"description": "A ping, verified", "content": _json(_ref("WebhookAck"))}},
            [
                _header(
                    "X-Hub-Signature-256",
                    "sha256=<hex HMAC-SHA256 of the raw body, keyed by the webhook secret>",
                    {"type": "string", "pattern": "^sha256=[0-9a-f]{64}$"},
                    required=True,
                ),
                _header("X-GitHub-Event", "push (ping: 200; others ignored)", required=True),
                _header("X-GitHub-Delivery", "Delivery id: a redelivery gets the same build (24 h)"),
            ],
        ),
    },
    "/api/v1/webhooks/gitlab/{deployment_id}": {
        "parameters": [DEPLOYMENT_ID],
        "post": _webhook(
            "GitLab push webhook: a push to the deployment's branch builds the pushed commit",
            {},
            [
                _header("X-Gitlab-Token", "The webhook secret", required=True),
                _header("X-Gitlab-Event", "Push Hook (others ignored)", required=True),
                _header("Idempotency-Key", "Same on a retry: a redelivery gets the same build (24 h)"),
                _header("X-Gitlab-Event-UUID", "Used for redeliveries when Idempotency-Key is absent"),
            ],
        ),
    },
}

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Build farm API", "version": "1.0.0"},
    "servers": [{"url": "/"}],
    "components": {
        "schemas": SCHEMAS,
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    "security": [{"bearer": []}],
    "paths": PATHS,
}

# Routes whose GET is a WebSocket handshake rather than an HTTP responder.
WEBSOCKET_PATHS = frozenset({"/api/v1/deployments/{deployment_id}/builds/{build_id}/logs/stream"})


class OpenApiResource:
    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = SPEC
