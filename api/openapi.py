"""The OpenAPI 3 description of the API, served at /api/v1/openapi.json.

A test walks the app's routes and fails if a route or method is missing here.
"""

from __future__ import annotations

import re

import falcon
import msgspec

from api.auth import API_PREFIX
from api.paging import DEFAULT_LIMIT, MAX_LIMIT
from common import contract

# The route templates api/app.py serves.
DEPLOYMENT = API_PREFIX + "/deployments/{deployment_id}"
BUILD = DEPLOYMENT + "/builds/{build_id}"
WEBHOOKS = API_PREFIX + "/webhooks"

UUID = {"type": "string", "format": "uuid"}
STRING = {"type": "string"}
REF = "#/components/schemas/{name}"


def _ref(name: str) -> dict:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict) -> dict:
    return {"application/json": {"schema": schema}}


def _returns(description: str, name: str, **extra: dict) -> dict:
    """A response whose body is the contract's Struct `name`."""
    return {"description": description, "content": _json(_ref(name)), **extra}


def _text(description: str, *media_types: str, **extra: dict) -> dict:
    """A response whose body is text of one of `media_types`."""
    return {"description": description, "content": {t: {"schema": STRING} for t in media_types}, **extra}


ERRORS = {
    "400": _returns("Malformed request", "Error"),
    "401": _returns("Missing or invalid bearer token", "Error"),
    "404": _returns("Not found", "Error"),
    "405": _returns("Method not allowed", "Error"),
    "409": _returns("Conflict with the current state", "Error"),
    "413": _returns("Body too large", "Error"),
    "415": _returns("Unsupported media type", "Error"),
    "422": _returns("Invalid field", "Error"),
    "503": _returns(
        "A service the API needs (Redis, S3) is unavailable; the `Retry-After` header says when to try again",
        "Error",
        headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    ),
    "429": _returns(
        "The tenant is at one of its limits (builds queued); the `Retry-After` header says when to try again",
        "Error",
        headers={"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
    ),
}
# What reading any body can refuse (api/validation.py, uploads); a JSON body can also not fit its Struct.
BODY_ERRORS = ("400", "413", "415")
JSON_BODY_ERRORS = (*BODY_ERRORS, "422")


def _op(summary: str, ok: dict, *errors: str, body: dict | None = None, params: list | None = None) -> dict:
    """An operation behind the bearer token (401) on what may not exist (404), reading the farm's
    records (503 when Redis or S3 does not answer)."""
    op = {"summary": summary, "responses": dict(ok)}
    if body is not None:
        op["requestBody"] = body
        errors += JSON_BODY_ERRORS if falcon.MEDIA_JSON in body["content"] else BODY_ERRORS
    for code in ("401", "404", "503", *errors):
        op["responses"][code] = ERRORS[code]
    if params:
        op["parameters"] = params
    return op


def _json_body(name: str, required: bool = True) -> dict:
    return {"required": required, "content": _json(_ref(name))}


def _public(summary: str, responses: dict, **path_item: list) -> dict:
    """A path whose GET needs no token."""
    return {**path_item, "get": {"summary": summary, "security": [], "responses": responses}}


LINK = {"Link": {"description": '<url>; rel="next" when more items follow', "schema": STRING}}


def _page(name: str) -> dict:
    return {
        "description": "A page",
        "headers": LINK,
        "content": _json({"type": "array", "items": _ref(name)}),
    }


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def _header(name: str, description: str, schema: dict | None = None, required: bool = False) -> dict:
    schema = schema or {"type": "string", "maxLength": 200}
    return {"name": name, "in": "header", "required": required, "schema": schema, "description": description}


IDEMPOTENCY_KEY = _header(
    "Idempotency-Key", "A retried request with the same key returns the same build (24 h)"
)
STATUS = {"type": "string", "enum": list(contract.STATUSES)}
LIMIT = {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}
PAGING = [
    _query("limit", LIMIT, "Page size"),
    _query("cursor", {"type": "integer", "minimum": 1}, "From the previous page's Link: rel=next"),
]

# The bodies, derived from the contract's Structs.
_, SCHEMAS = msgspec.json.schema_components(contract.SCHEMAS, ref_template=REF)

# A secret's name in its path, as the contract declares it.
SECRET_NAME = msgspec.json.schema(contract.SecretName)

# The one body no Struct describes (api/resources/uploads.py).
FILE = {"type": "string", "format": "binary"}
UPLOAD_FORM = {"type": "object", "required": ["archive"], "properties": {"archive": FILE, "dockerfile": FILE}}

CSP_HEADER = {"description": "Only the page's own scripts, styles and API", "schema": STRING}
DASHBOARD_HEADERS = {"Content-Security-Policy": CSP_HEADER}


def _webhook(summary: str, ok: dict, headers: list[dict]) -> dict:
    """A push webhook (docs/WEBHOOKS.md): no bearer token, the deployment's secret instead."""
    acknowledged = {
        "description": "A build of the pushed commit (a redelivery: the build it created), "
        "or {status: ignored} for other events, branches, tags and branch deletions",
        "content": _json({"anyOf": [_ref("Build"), _ref("WebhookAck")]}),
    }
    op = _op(
        summary,
        {**ok, "202": acknowledged},
        "409",
        "429",
        "503",
        body=_json_body("PushPayload"),
        params=headers,
    )
    op["security"] = []
    op["responses"]["401"] = _returns(
        "Missing secret, or it does not match (also: unknown id, archive deployment)", "Error"
    )
    return op


def _declare_path_ids(paths: dict) -> None:
    """Declares each path's parameters as ids (UUIDs), unless the path declares its own."""
    for path, item in paths.items():
        if names := re.findall(r"{(\w+)}", path):
            ids = [{"name": n, "in": "path", "required": True, "schema": UUID} for n in names]
            item.setdefault("parameters", ids)


PATHS = {
    "/": _public(
        "The web dashboard (its views are hash routes: #/deployments, …)",
        {"200": _text("The page", "text/html", headers=DASHBOARD_HEADERS)},
    ),
    "/static/{name}": _public(
        "A file of the dashboard (script, style sheet, icon)",
        {
            "200": _text(
                "The file", "text/javascript", "text/css", "image/svg+xml", headers=DASHBOARD_HEADERS
            ),
            "404": ERRORS["404"],
        },
        parameters=[{"name": "name", "in": "path", "required": True, "schema": STRING, "example": "app.js"}],
    ),
    "/healthz": _public("Process is up", {"200": {"description": "OK"}}),
    "/readyz": _public(
        "Redis and S3 reachable", {"200": {"description": "Ready"}, "503": {"description": "Not ready"}}
    ),
    "/metrics": _public(
        "Prometheus metrics (text format): HTTP requests by route, queue depth. No tenant token; "
        "where the operator set BUILDFARM_METRICS_TOKEN, `Authorization: Bearer` with that token",
        {
            "200": _text("The metrics of every API process", "text/plain"),
            "401": _returns("BUILDFARM_METRICS_TOKEN is set and the request does not carry it", "Error"),
        },
    ),
    API_PREFIX + "/openapi.json": _public("This document", {"200": {"description": "OpenAPI 3"}}),
    API_PREFIX + "/deployments": {
        "get": _op("List deployments, newest first", {"200": _page("Deployment")}, "400", params=PAGING),
        "post": _op(
            "Create a deployment (git or archive); 409 if its subdomain is taken, or reserved to "
            "another tenant by a deleted deployment (only an admin frees it: `buildfarm subdomain free`)",
            {"201": _returns("Created", "Deployment")},
            "409",
            body=_json_body("NewDeployment"),
        ),
    },
    DEPLOYMENT: {
        "get": _op("Get a deployment", {"200": _returns("The deployment", "Deployment")}),
        "patch": _op(
            "Change a deployment's settings: the fields given replace its own for its next builds "
            "(`{}` changes nothing)",
            {"200": _returns("The deployment", "Deployment")},
            body=_json_body("DeploymentUpdate"),
        ),
        "delete": _op(
            "Delete a deployment with its builds; refused (409) while a build is pending or building. "
            "Its subdomain stays reserved to the tenant",
            {"204": {"description": "Deleted"}},
            "409",
        ),
    },
    DEPLOYMENT + "/upload": {
        "post": _op(
            "Upload the source archive (.tar.gz) and optionally an inline Dockerfile",
            {"200": _returns("Stored", "Upload")},
            "409",
            body={"required": True, "content": {"multipart/form-data": {"schema": UPLOAD_FORM}}},
        ),
    },
    DEPLOYMENT + "/deploy": {
        "post": _op(
            "Trigger a build (git: branch tip or the given commit; archive: the last upload), "
            "with build args merged over the deployment's, and without the layer cache if asked",
            {"202": _returns("Queued", "Build")},
            "409",
            "429",
            "503",
            body=_json_body("DeployRequest", required=False),
            params=[IDEMPOTENCY_KEY],
        ),
    },
    DEPLOYMENT + "/builds": {
        "get": _op(
            "List builds, newest first",
            {"200": _page("Build")},
            "400",
            params=[*PAGING, _query("status", STATUS, "Only builds in this status")],
        ),
    },
    BUILD: {"get": _op("Get a build", {"200": _returns("The build", "Build")})},
    BUILD + "/logs": {
        "get": _op(
            "The build's log as plain text (live while building, archived afterwards)",
            {"200": _text("The docker build output", "text/plain")},
        ),
    },
    BUILD + "/logs/stream": {
        "get": _op(
            "WebSocket: one text message per log line from the first (or after `after`), "
            "then live; closed with 1000 when the build ends. Auth: the Authorization header, "
            "or the subprotocols 'bearer' and the token.",
            {"101": {"description": "Switching protocols to WebSocket"}},
            "405",
            params=[_query("after", {"type": "integer", "minimum": 0}, "Resume after this many lines")],
        ),
    },
    BUILD + "/retry": {
        "post": _op(
            "Build exactly the same source again (same commit, or same archive and inline Dockerfile)",
            {"202": _returns("Queued", "Build")},
            "409",
            "429",
            "503",
        ),
    },
    BUILD + "/cancel": {
        "post": _op(
            "Cancel a build: pending at once (200), building asked to stop (202)",
            {"200": _returns("Cancelled", "Build"), "202": _returns("Stop requested", "Build")},
            "409",
        ),
    },
    DEPLOYMENT + "/webhook-secret": {
        "post": _op(
            "Replace a git deployment's webhook secret; the new one is shown once, the old one "
            "stops working at once",
            {"200": _returns("The new secret", "WebhookSecret")},
            "409",
        ),
    },
    DEPLOYMENT + "/secrets": {
        "get": _op(
            "The names of the deployment's build secrets (values are never returned)",
            {"200": _returns("The names, sorted", "SecretNames")},
        ),
    },
    DEPLOYMENT + "/secrets/{name}": {
        "parameters": [
            {"name": "deployment_id", "in": "path", "required": True, "schema": UUID},
            {"name": "name", "in": "path", "required": True, "schema": SECRET_NAME},
        ],
        "put": _op(
            "Set or rotate a build secret (Dockerfiles read it with RUN --mount=type=secret,id=NAME); "
            "encrypted at rest, never returned",
            {"204": {"description": "Stored"}},
            "409",
            "503",
            body=_json_body("SecretValue"),
        ),
        "delete": _op("Delete a build secret", {"204": {"description": "Deleted"}}, "422"),
    },
    WEBHOOKS + "/github/{deployment_id}": {
        "post": _webhook(
            "GitHub push webhook: a push to the deployment's branch builds the pushed commit",
            {"200": _returns("A ping, verified", "WebhookAck")},
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
    WEBHOOKS + "/gitlab/{deployment_id}": {
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
_declare_path_ids(PATHS)

SPEC = {
    "openapi": "3.1.0",
    "info": {"title": "Build farm API", "version": "1.0.0"},
    "servers": [{"url": "/"}],
    "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    "security": [{"bearer": []}],
    "paths": PATHS,
}

# Routes whose GET is a WebSocket handshake rather than an HTTP responder.
WEBSOCKET_PATHS = frozenset({BUILD + "/logs/stream"})


class OpenApiResource:
    public = True  # a client reads it before it has a token

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = SPEC
