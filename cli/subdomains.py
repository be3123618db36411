"""`buildfarm subdomain free`: an admin frees a subdomain that a deleted deployment left reserved
to its tenant (a tombstone), straight in the farm's Redis."""

from __future__ import annotations

import argparse
import sys


def run(args: argparse.Namespace) -> int:
    # Imported here: redis costs every other command a tenth of a second or more at start.
    from common.config import Config
    from common.records.call import SyncRunner
    from common.records.subdomains import free_subdomain
    from common.redis_clients import sync_redis

    # The farm's Redis: BUILDFARM_REDIS_URL.
    tenant = SyncRunner(sync_redis(Config.from_env().redis_url)).run(free_subdomain(args.subdomain))
    if tenant is None:
        print(f"subdomain '{args.subdomain}' has no tombstone", file=sys.stderr)
        return 1
    print(f"subdomain '{args.subdomain}' freed (it was reserved to tenant {tenant})")
    return 0
