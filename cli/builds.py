"""`buildfarm builds list|get|logs|cancel --deployment ID_OR_SUBDOMAIN`."""

from __future__ import annotations

import argparse
import json
import sys

from cli import output
from cli.api_client import ApiClient, run_deployment_action
from cli.follow import follow_and_report


def run(args: argparse.Namespace) -> int:
    return run_deployment_action(args, ACTIONS)


def _list(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    builds = api.builds(deployment["id"], args.limit, args.status)
    if args.json:
        output.line(json.dumps(builds, indent=2))
    elif builds:
        output.line(output.build_table(builds))
    else:
        output.note(
            f"no builds{f' with status {args.status}' if args.status else ''} in {deployment['subdomain']}"
        )
    return 0


def _get(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    build = api.get_build(deployment["id"], args.build_id)
    output.line(json.dumps(build, indent=2) if args.json else output.build_details(build))
    return 0


def _logs(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    if args.follow:
        build = api.get_build(deployment["id"], args.build_id)
        return follow_and_report(api, deployment, build)
    for chunk in api.log_chunks(deployment["id"], args.build_id):
        sys.stdout.buffer.write(chunk)
    sys.stdout.flush()
    return 0


def _cancel(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    code, build = api.cancel_build(deployment["id"], args.build_id)
    if code == 202:
        output.note(f"{output.build_label(build)}: stop requested; the worker ends it as cancelled")
    else:
        output.note(f"{output.build_label(build)}: {build['status']}")
    output.line(build["status"] if code != 202 else "cancelling")
    return 0


ACTIONS = {"list": _list, "get": _get, "logs": _logs, "cancel": _cancel}
