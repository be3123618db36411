"""API tokens: created once, shown once, stored only as a SHA-256 hash. The one module that
writes and reads token records."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any, TypeVar

import redis

from common.models import utc_now
from common.records import fields, keys, scripts
from common.records.call import Call, SyncRunner, first, flat_hash, pairs

TOKEN_PREFIX = "bf_"
T = TypeVar("T")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant a token belongs to, the token's name, and whether it is an
    admin's (which also sees the builds every worker runs, GET /farm)."""

    tenant: str
    token_name: str
    admin: bool = False


def token_hash(token: str) -> str:
    """Tokens are high-entropy, so a plain SHA-256 is enough (no password-style stretching)."""
    return hashlib.sha256(token.encode()).hexdigest()


_TOKEN_FIELDS = (fields.TOKEN_HASH, fields.TOKEN_TENANT, fields.TOKEN_NAME, fields.TOKEN_ADMIN)


def _principal(digest: str, values: list[bytes | None]) -> Principal | None:
    stored, tenant, name, admin = values
    if stored is None or not hmac.compare_digest(stored.decode(), digest):
        return None
    return Principal(tenant.decode(), name.decode(), admin == b"1")


def authenticate(token: str) -> Call[Principal | None]:
    """Who a token belongs to; None for a token never issued or revoked."""
    digest = token_hash(token)
    return Call(
        lambda replies: _principal(digest, replies[0]),
        commands=[("HMGET", keys.token(digest), *_TOKEN_FIELDS)],
    )


def authenticate_with(token: str, read: Call[T]) -> Call[tuple[Principal | None, T | None]]:
    """Who a token belongs to, and the result of `read` (one read command whose first argument is
    its key) made in the same round trip; that result is None, unread, for a token refused."""
    [(command, key, *args)] = read.commands
    digest = token_hash(token)

    def parse(reply: list[Any]) -> tuple[Principal | None, T | None]:
        principal = _principal(digest, reply[0])
        if principal is None:
            return None, None
        # A script gets a hash as a flat list; the client, as a dict.
        return principal, read.parse([flat_hash(reply[1]) if command == "HGETALL" else reply[1]])

    return Call(
        parse,
        script=scripts.AUTHENTICATE_WITH,
        keys=[keys.token(digest), key],
        args=[len(_TOKEN_FIELDS), *_TOKEN_FIELDS, command, *args],
    )


def create_token(client: redis.Redis, tenant: str, name: str, admin: bool = False) -> str:
    """Stores a new token's hash and returns the token itself, which is never stored."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    digest = token_hash(token)
    record = {
        fields.TOKEN_HASH: digest,
        fields.TOKEN_TENANT: tenant,
        fields.TOKEN_NAME: name,
        fields.TOKEN_CREATED_AT: utc_now(),
        fields.TOKEN_ADMIN: "1" if admin else "0",
    }
    SyncRunner(client).run(
        Call(
            first, commands=[("HSET", keys.token(digest), *pairs(record)), ("SADD", keys.TOKEN_INDEX, digest)]
        )
    )
    return token


def list_tokens(client: redis.Redis) -> list[dict[str, str]]:
    """Every token's record (hash, tenant, name, created_at, admin), by hash."""
    runner = SyncRunner(client)
    digests = sorted(runner.run(Call(first, commands=[("SMEMBERS", keys.TOKEN_INDEX)])))
    records = runner.run(Call(list, commands=[("HGETALL", keys.token(d.decode())) for d in digests]))
    return [{k.decode(): v.decode() for k, v in record.items()} for record in records if record]


def revoke_token(client: redis.Redis, token: str) -> bool:
    digest = token_hash(token)
    deleted = SyncRunner(client).run(
        Call(first, commands=[("DEL", keys.token(digest)), ("SREM", keys.TOKEN_INDEX, digest)])
    )
    return bool(deleted)
