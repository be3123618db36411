"""Reading request bodies into the contract's Structs (common/contract.py), with clear 4xx
errors: 400 for what is not JSON, 413 past the size cap, 415 for another media type, 422 for a
body that does not fit its Struct, with a message naming the field and what it must be."""

from __future__ import annotations

import asyncio
import re
import typing
from typing import Annotated, Literal, TypeVar
from urllib.parse import urlsplit

import falcon
import msgspec

from api.errors import bad_request, unprocessable
from common.outbound import HostUnresolved, OutboundRefused, OutboundRule

_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REQUEST_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")
# msgspec's ValidationError text: "<what> - at `$.<field>`" (no path for the body itself), or
# for an object field's keys and values "- at `key` in `$.<field>`" and "- at `$.<field>[...]`",
# for an array field's items "- at `$.<field>[<index>]`".
_AT_FIELD = re.compile(
    r"^(?P<what>.*) - at (?P<key>`key` in )?`\$\.(?P<field>\w+)(?P<value>\[\.\.\.\])?(?P<item>\[\d+\])?`$"
)
_TYPE_NAMES = {"str": "string", "int": "integer", "bool": "boolean", "object": "object", "array": "array"}
# A git host the resolver has not answered for by then is taken as one that does not resolve.
RESOLVE_TIMEOUT_S = 5.0

T = TypeVar("T")


async def read_body(req: falcon.Request, max_bytes: int) -> bytes:
    """The raw body, up to `max_bytes` (413 past it): webhooks verify a signature over these bytes."""
    if req.content_length is not None and req.content_length > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"JSON body exceeds {max_bytes} bytes")
    raw = await req.stream.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise falcon.HTTPContentTooLarge(description=f"JSON body exceeds {max_bytes} bytes")
    return raw


async def read_json(req: falcon.Request, max_bytes: int, kind: type[T], *, allow_empty: bool = False) -> T:
    """The request's body as a `kind` Struct, read up to `max_bytes` (Falcon sets no limit)."""
    return parse_json(await read_body(req, max_bytes), req.content_type, kind, allow_empty=allow_empty)


def parse_json(raw: bytes, content_type: str | None, kind: type[T], *, allow_empty: bool = False) -> T:
    """A body read by read_body as a `kind` Struct (400, 415 or 422 otherwise)."""
    if not raw.strip():
        if allow_empty:
            return kind()
        raise bad_request("A JSON object body is required")
    if content_type is None or content_type.split(";")[0].strip() != falcon.MEDIA_JSON:
        raise falcon.HTTPUnsupportedMediaType(description="Content-Type must be application/json")
    # Parsed, then fitted to `kind`: a body that is not JSON at all (or nested too deeply to
    # parse) is a 400 whatever its fields, a JSON body that does not fit is a 422.
    try:
        body = msgspec.json.decode(raw)
    except RecursionError:
        raise bad_request("JSON is nested too deeply") from None
    except msgspec.DecodeError as e:
        raise bad_request(_malformed(raw, e)) from None
    try:
        return msgspec.convert(body, kind)
    except msgspec.ValidationError as e:
        raise unprocessable(_field_problem(kind, str(e))) from None


def _malformed(raw: bytes, error: msgspec.DecodeError) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "Body is not valid UTF-8"
    return f"Malformed JSON: {error}"


def _field_problem(kind: type, text: str) -> str:
    """msgspec's account of a body that does not fit `kind`, said in the API's words."""
    if re.fullmatch(r"Expected `object`, got `\w+`", text):
        return "The JSON body must be an object"
    if missing := re.fullmatch(r"Object missing required field `(\w+)`", text):
        return f"Field '{missing[1]}' is required"
    if unknown := re.fullmatch(r"Object contains unknown field `(.+)`", text):
        return f"Unknown field(s): {unknown[1]}"
    at = _AT_FIELD.match(text)
    if at is None:
        return text  # a rule of the Struct's own (__post_init__), already in the API's words
    what, field = at["what"], at["field"]
    annotation = typing.get_type_hints(kind, include_extras=True)[field]
    subject = f"Field '{field}'"
    if at["key"] or at["value"]:
        part = 0 if at["key"] else 1
        annotation = typing.get_args(_unwrapped(annotation))[part]
        subject = f"Each {('name', 'value')[part]} in '{field}'"
    elif at["item"]:
        [annotation] = typing.get_args(_unwrapped(annotation, list))
        subject = f"Each item of '{field}'"
    elif what.endswith("got `null`"):
        return f"{subject} is required"
    metas, choices = _declared(annotation)
    if expected := re.fullmatch(r"Expected `(\w+)(?: \| null)?`, got `\w+`", what):
        return f"{subject} must be of type {_TYPE_NAMES.get(expected[1], expected[1])}"
    if "matching regex" in what:
        [meta] = [m for m in metas if m.pattern]
        return f"{subject} must be {meta.description}"
    if length := re.fullmatch(r"Expected `str` of length <= (\d+)", what):
        return f"{subject} must be at most {length[1]} characters"
    if entries := re.fullmatch(r"Expected `object` of length <= (\d+)", what):
        return f"{subject} must have at most {entries[1]} entries"
    if what.startswith("Invalid enum value"):
        return f"{subject} must be " + " or ".join(f"'{choice}'" for choice in choices)
    if re.fullmatch(r"Expected `int` [<>]= -?\d+", what):
        [meta] = [m for m in metas if m.ge is not None]
        if meta.le is None:
            return f"{subject} must be at least {meta.ge}"
        return f"{subject} must be between {meta.ge} and {meta.le}"
    return f"{subject}: {what}"


def _unwrapped(annotation, origin: type = dict):
    """The object (dict) or array (list) type inside a field's annotation: past Annotated and
    `| None`/UNSET."""
    while True:
        if typing.get_origin(annotation) is Annotated:
            annotation = annotation.__origin__
        elif typing.get_origin(annotation) is origin:
            return annotation
        else:
            [annotation] = [a for a in typing.get_args(annotation) if typing.get_origin(a) is not None]


def _declared(annotation) -> tuple[list[msgspec.Meta], tuple]:
    """The Meta constraints and the Literal choices a field's annotation declares, in the
    order written (msgspec's own introspection sorts the choices)."""
    metas: list[msgspec.Meta] = []
    choices: tuple = ()
    pending = [annotation]
    while pending:
        kind = pending.pop()
        origin = typing.get_origin(kind)
        if origin is Annotated:
            pending.append(kind.__origin__)
            metas += [m for m in kind.__metadata__ if isinstance(m, msgspec.Meta)]
        elif origin is Literal:
            choices = typing.get_args(kind)
        else:
            pending += typing.get_args(kind)
    return metas, choices


def check_git_url(value: str, allowed_schemes: frozenset[str]) -> None:
    """The farm's own rule on top of the contract's pattern: one of the allowed schemes."""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a bracketed host that is no IPv6 address
        raise unprocessable("Field 'repo_url' is not a URL that can be read") from None
    if parts.scheme.lower() not in allowed_schemes or not parts.netloc:
        schemes = ", ".join(sorted(allowed_schemes))
        raise unprocessable(f"Field 'repo_url' must be a URL with one of the schemes: {schemes}")


def check_build_timeout(value: int | None, maximum: int) -> None:
    """The farm's cap on top of the contract: a deployment's build timeout is at most the
    operator's BUILDFARM_BUILD_TIMEOUT_S (also the timeout of a deployment that sets none)."""
    if value is not None and value > maximum:
        raise unprocessable(
            f"Field 'build_timeout_s' must be at most {maximum}: the farm's maximum build timeout"
        )


async def check_git_host(value: str, rule: OutboundRule, field: str = "repo_url") -> None:
    """The outbound address rule (common/outbound.py) on the host of a URL the farm will connect
    to (a git URL, a notification's): 422 for a host the farm does not connect to. A host that
    does not resolve here is accepted: the workers may see other DNS than the API (an internal
    name), and they check again before they connect."""
    try:
        await asyncio.wait_for(asyncio.to_thread(rule.check_url, value), RESOLVE_TIMEOUT_S)
    except (HostUnresolved, TimeoutError):
        return
    except OutboundRefused as e:
        raise unprocessable(f"Field '{field}' is refused: {e}") from None


def is_uuid(value: str) -> bool:
    return bool(_UUID.match(value))


def check_request_key(header: str, value: str) -> str:
    """An Idempotency-Key or a webhook delivery id: 1-200 printable ASCII characters (400 otherwise)."""
    if not _REQUEST_KEY.match(value):
        raise bad_request(f"{header} must be 1-200 printable ASCII characters")
    return value
