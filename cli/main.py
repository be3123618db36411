"""The `buildfarm` command."""

from __future__ import annotations

import argparse
import re
import sys

from cli.tokens import create_token, list_tokens, revoke_token
from common.config import Config
from common.redis_clients import sync_redis

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


def _tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise argparse.ArgumentTypeError("a tenant is 1-63 lowercase letters, digits, '-' or '_'")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="buildfarm", description="Build farm administration")
    commands = parser.add_subparsers(dest="command", required=True)
    token = commands.add_parser("token", help="API tokens").add_subparsers(dest="action", required=True)
    create = token.add_parser("create", help="create a token (shown once)")
    create.add_argument("--tenant", required=True, type=_tenant)
    create.add_argument("--name", required=True)
    token.add_parser("list", help="list tokens (their names, never the tokens)")
    revoke = token.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
