"""`buildfarm usage`: your tenant's builds running and queued now, its limits in force (0: no
limit) and its build minutes this month, from GET /api/v1/usage."""

from __future__ import annotations

import argparse
import json

from cli import output
from cli.api_client import ApiClient


def run(args: argparse.Namespace) -> int:
    api = ApiClient.from_settings(args.api_url, args.api_token)
    try:
        usage = api.usage()
    finally:
        api.close()
    if args.json:
        output.line(json.dumps(usage, indent=2))
        return 0
    rows = [(name, usage[name]) for name in ("tenant", "running", "queued", "month", "build_minutes")]
    rows += [(name, value or "no limit") for name, value in usage["limits"].items()]
    width = max(len(name) for name, _ in rows)
    output.line("\n".join(f"{name:<{width}}  {value}" for name, value in rows))
    return 0
