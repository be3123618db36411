"""Token administration: create, list and revoke API tokens (straight in Redis)."""

from __future__ import annotations

import argparse
import sys

import redis

from common import keys
from common.config import Config
from common.models import utc_now
from common.redis_clients import sync_redis
from common.tokens import new_token, token_hash

TOKEN_INDEX = f"{keys.PREFIX}tokens"


def create_token(client: redis.Redis, tenant: str, name: str) -> str:
    """Stores a new token's hash and returns the token itself, which is never stored."""
    token = new_token()
    digest = token_hash(token)
    with client.pipeline(transaction=True) as pipe:
        pipe.hset(
            keys.token(digest),
            mapping={"hash": digest, "tenant": tenant, "name": name, "created_at": utc_now()},
        )
        pipe.sadd(TOKEN_INDEX, digest)
        pipe.execute()
    return token


def list_tokens(client: redis.Redis) -> list[dict[str, str]]:
    rows = []
    for digest in sorted(client.smembers(TOKEN_INDEX)):
        record = client.hgetall(keys.token(digest.decode()))
        if record:
            rows.append({k.decode(): v.decode() for k, v in record.items()})
    return rows


def revoke_token(client: redis.Redis, token: str) -> bool:
    digest = token_hash(token)
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.token(digest))
        pipe.srem(TOKEN_INDEX, digest)
        deleted, _ = pipe.execute()
    return bool(deleted)


def run(args: argparse.Namespace) -> int:
    """`buildfarm token create|list|revoke`: straight in the farm's Redis (BUILDFARM_REDIS_URL)."""
    client = sync_redis(Config.from_env().redis_url)
    if args.action == "create":
        print(create_token(client, args.tenant, args.name))
    elif args.action == "list":
        for row in list_tokens(client):
            print(f"{row['tenant']}\t{row['name']}\t{row['created_at']}\t{row['hash'][:12]}")
    elif args.action == "revoke" and not revoke_token(client, args.token):
        print("no such token", file=sys.stderr)
        return 1
    return 0
