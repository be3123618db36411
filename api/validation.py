"""Reading request bodies safely and checking their fields, with clear 4xx errors."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import falcon

from api.errors import bad_request, unprocessable

_DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_GIT_REF = re.compile(r"^[A-Za-z0-9._/-]+$")
_COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


async def read_json(req: falcon.Request, max_bytes: int, *, allow_empty: bool = False) -> dict:
    """The request's JSON object, read up to `max_bytes` (Falcon sets no limit of its own)."""
    return parse_json(await read_body(req, max_bytes), req.content_type, allow_empty=allow_empty)


async def read_body(req: falcon.Request, max_bytes: int) -> bytes:
    """The raw body, up to `max_bytes` (413 past it): webhooks verify a signature over these bytes."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"JSON body exceeds {max_bytes} bytes")
    raw = await req.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"JSON body exceeds {max_bytes} bytes")
    return raw


def parse_json(raw: bytes, content_type: str | None, *, allow_empty: bool = False) -> dict:
    """A body read by read_body as a JSON object (400, 415 or 422 otherwise)."""
    if not raw.strip():
        if allow_empty:
            return {}
        raise bad_request("A JSON object body is required")
    if content_type is None or content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise falcon.HTTPUnsupportedMediaType(description="Content-Type must be application/json")
    try:
        body = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise bad_request("Body is not valid UTF-8") from None
    except RecursionError:
        raise bad_request("JSON is nested too deeply") from None
    except ValueError as e:
        raise bad_request(f"Malformed JSON: {e}") from None
    if not isinstance(body, dict):
        raise unprocessable("The JSON body must be an object")
    return body


@dataclass(frozen=True)
class Field:
    """One accepted body field: its type, whether it is required, and a value check."""

    kind: type
    required: bool = False
    max_length: int = 0
    check: Callable[[Any], str | None] | None = None


def validate(body: dict, schema: dict[str, Field]) -> dict[str, Any]:
    """The body's fields after checking names, types, lengths and values (422 on the first fault)."""
    unknown = sorted(set(body) - set(schema))
    if unknown:
        raise unprocessable(f"Unknown field(s): {', '.join(unknown)}")
    out: dict[str, Any] = {}
    for name, field in schema.items():
        value = body.get(name)
        if value is None:
            if field.required:
                raise unprocessable(f"Field '{name}' is required")
            continue
        if not isinstance(value, field.kind) or isinstance(value, bool) != (field.kind is bool):
            raise unprocessable(f"Field '{name}' must be of type {_type_name(field.kind)}")
        if field.max_length and len(value) > field.max_length:
            raise unprocessable(f"Field '{name}' must be at most {field.max_length} characters")
        if field.check is not None:
            problem = field.check(value)
            if problem:
                raise unprocessable(f"Field '{name}' {problem}")
        out[name] = value
    return out


def _type_name(kind: type) -> str:
    return {str: "string", int: "integer", bool: "boolean"}.get(kind, kind.__name__)


def check_name(value: str) -> str | None:
    if not value.strip():
        return "must not be blank"
    if _CONTROL.search(value):
        return "must not contain control characters"
    return None


def check_subdomain(value: str) -> str | None:
    if not _DNS_LABEL.match(value):
        return "must be a DNS label: 1-63 lowercase letters, digits or '-', not starting or ending with '-'"
    return None


def git_url_checker(allowed_schemes: frozenset[str]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        if value.startswith("-") or _CONTROL.search(value) or " " in value:
            return "must be a URL without spaces, control characters or a leading '-'"
        parts = urlsplit(value)
        if parts.scheme.lower() not in allowed_schemes or not parts.netloc:
            schemes = ", ".join(sorted(allowed_schemes))
            return f"must be a URL with one of the schemes: {schemes}"
        return None

    return check


def check_branch(value: str) -> str | None:
    if (
        not _GIT_REF.match(value)
        or value.startswith(("-", "/", "."))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or "//" in value
        or "/." in value
    ):
        return "must be a valid git branch name (letters, digits, '.', '_', '-', '/'; no '..')"
    return None


def check_dockerfile_path(value: str) -> str | None:
    if not value or value.startswith("/") or "\\" in value or _CONTROL.search(value):
        return "must be a relative path inside the build context"
    if any(part in ("..", "") for part in value.split("/")):
        return "must stay inside the build context (no '..' or empty segments)"
    return None


def check_commit_sha(value: str) -> str | None:
    return None if _COMMIT_SHA.match(value) else "must be a full 40-character lowercase hex SHA"


def check_range(low: int, high: int) -> Callable[[int], str | None]:
    return lambda value: None if low <= value <= high else f"must be between {low} and {high}"


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))
