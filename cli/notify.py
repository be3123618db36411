"""`buildfarm notify add|list|rm DEPLOYMENT …`: where a deployment's build events are sent
(docs/INTEGRATIONS.md). `add` prints the target's signing secret, shown this once."""

from __future__ import annotations

import argparse

from cli import output
from cli.api_client import ApiClient, run_deployment_action


def run(args: argparse.Namespace) -> int:
    return run_deployment_action(args, ACTIONS)


def _add(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    fields = {"url": args.url, "format": args.format}
    if args.events:
        fields["events"] = args.events
    target = api.add_notification(deployment["id"], fields)
    output.note(
        f"Added notification {target['id']} to {deployment['subdomain']} ({', '.join(target['events'])}); "
        "its signing secret, shown this once:"
    )
    output.line(target["secret"])
    return 0


def _list(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    targets = api.notifications(deployment["id"])
    if not targets:
        output.note(f"no notifications in {deployment['subdomain']}")
    for target in targets:
        output.line(f"{target['id']}  {target['format']:<5}  {','.join(target['events'])}  {target['url']}")
    return 0


def _rm(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    api.delete_notification(deployment["id"], args.notification_id)
    output.note(f"Removed notification {args.notification_id} of {deployment['subdomain']}")
    return 0


ACTIONS = {"add": _add, "list": _list, "rm": _rm}
