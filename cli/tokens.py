"""`buildfarm token create|list|revoke`: token administration, straight in the farm's Redis."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    # Imported here: redis costs every other command a tenth of a second or more at start.
    from common.config import Config
    from common.redis_clients import sync_redis
    from common.tokens import create_token, list_tokens, revoke_token

    # The farm's Redis: BUILDFARM_REDIS_URL.
    client = sync_redis(Config.from_env().redis_url)
    if args.action == "create":
        print(create_token(client, args.tenant, args.name, admin=args.admin))
    elif args.action == "list":
        for row in list_tokens(client):
            admin = "\tadmin" if row.get("admin") == "1" else ""
            print(f"{row['tenant']}\t{row['name']}\t{row['created_at']}\t{row['hash'][:12]}{admin}")
    elif args.action == "revoke" and not revoke_token(client, args.token):
        print("no such token", file=sys.stderr)
        return 1
    return 0
