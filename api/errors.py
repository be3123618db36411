"""One shape for every error body: {"error": code, "message": text}."""

from __future__ import annotations

import falcon
import redis.exceptions

from common.contract import Error, encode
from common.s3 import UNANSWERED

# How long a client is told to wait when a service the API needs does not answer.
RETRY_AFTER_S = 5
# What the API meets when Redis or S3 does not answer (after the clients' own short retries);
# an S3 error response (S3Error: no such key, access denied…) is an answer, and not here.
UNAVAILABLE = {
    redis.exceptions.ConnectionError: "Redis (the farm's records)",
    redis.exceptions.TimeoutError: "Redis (the farm's records)",
    **dict.fromkeys(UNANSWERED, "S3 (the farm's object store)"),
}

ERROR_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}


def error_body(exc: falcon.HTTPError) -> bytes:
    status = falcon.http_status_to_code(exc.status)
    message = exc.description or (exc.title or "").split(" ", 1)[-1] or "Error"
    return encode(Error(ERROR_CODES.get(status, "error"), message))


def serialize_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    resp.data = error_body(exc)
    resp.content_type = falcon.MEDIA_JSON


def not_found(message: str) -> falcon.HTTPError:
    return falcon.HTTPNotFound(description=message)


def conflict(message: str) -> falcon.HTTPError:
    return falcon.HTTPConflict(description=message)


def bad_request(message: str) -> falcon.HTTPError:
    return falcon.HTTPBadRequest(description=message)


def unprocessable(message: str) -> falcon.HTTPError:
    return falcon.HTTPUnprocessableEntity(description=message)


def too_many_requests(message: str, retry_after_s: int) -> falcon.HTTPError:
    """A tenant past one of its limits (common/tenant_limits.py): 429, and when to try again."""
    return falcon.HTTPTooManyRequests(description=message, retry_after=retry_after_s)


async def unavailable(req: falcon.Request, resp: falcon.Response, exc: Exception, params: dict) -> None:
    """An infrastructure fault answered as such: 503 with Retry-After, never a 500."""
    part = next(name for kind, name in UNAVAILABLE.items() if isinstance(exc, kind))
    raise falcon.HTTPServiceUnavailable(
        description=f"{part} is unavailable: try again in {RETRY_AFTER_S} s",
        retry_after=RETRY_AFTER_S,
    )
