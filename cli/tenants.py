"""`buildfarm tenant set|show|list`: a tenant's limits (common/tenant_limits.py), straight in the
farm's Redis; the API and the workers read them on every request, so a change needs no restart."""

from __future__ import annotations

import argparse

from cli.errors import CliError

DEFAULT = "default"


def limit_value(value: str) -> int | None:
    """A limit on the command line: a whole number (0: no limit), or `default` (the farm's)."""
    if value == DEFAULT:
        return None
    if not value.isdigit():
        raise argparse.ArgumentTypeError("a whole number (0: no limit) or 'default'")
    return int(value)


def run(args: argparse.Namespace) -> int:
    # Imported here: redis costs every other command a tenth of a second or more at start.
    from common.config import Config
    from common.models import LIMIT_NAMES
    from common.records.call import SyncRunner
    from common.redis_clients import sync_redis
    from common.tenant_limits import farm_defaults, own_limits, set_limits, tenant_limits, tenants_with_limits

    # The farm's Redis: BUILDFARM_REDIS_URL.
    config = Config.from_env()
    runner = SyncRunner(sync_redis(config.redis_url))
    if args.action == "list":
        for tenant in runner.run(tenants_with_limits()):
            own = runner.run(own_limits(tenant))
            print(tenant + "\t" + " ".join(f"{name}={own[name]}" for name in LIMIT_NAMES if name in own))
        return 0
    if args.action == "set":
        changes = {name: getattr(args, name) for name in LIMIT_NAMES if getattr(args, name) is not UNSET}
        if not changes:
            raise CliError("tenant set: give at least one limit (see `buildfarm tenant set --help`)")
        runner.run(set_limits(args.tenant, changes))
    own = runner.run(own_limits(args.tenant))
    limits = runner.run(tenant_limits(args.tenant, farm_defaults(config)))
    for name in LIMIT_NAMES:
        value = getattr(limits, name)
        print(f"{name}\t{value if value else 'no limit'}\t({'set' if name in own else 'farm default'})")
    return 0


UNSET = object()
