"""One shape for every error body: {"error": code, "message": text}."""

from __future__ import annotations

import falcon

from common.contract import Error, encode

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    500: "internal_error",
    503: "service_unavailable",
}


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    status = falcon.http_status_to_code(exc.status)
    message = exc.description or (exc.title or "").split(" ", 1)[-1] or "Error"
    resp.data = encode(Error(ERROR_CODES.get(status, "error"), message))
    resp.content_type = falcon.MEDIA_JSON


def not_found(message: str) -> falcon.HTTPError:
    return falcon.HTTPNotFound(description=message)


def conflict(message: str) -> falcon.HTTPError:
    return falcon.HTTPConflict(description=message)


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPBadRequest(description=message)


def unprocessable(message: str) -> falcon.HTTPError:
    return falcon.HTTPUnprocessableEntity(description=message)
