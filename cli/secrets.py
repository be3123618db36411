"""`buildfarm secrets set|rm|ls DEPLOYMENT …`: a deployment's build secrets. A value is read
from stdin (or typed without echo at a terminal), never from the command line, which every
user of the machine can see in `ps`."""

from __future__ import annotations

import argparse
import getpass
import sys

from cli import output
from cli.api_client import ApiClient, run_deployment_action
from cli.errors import CliError


def run(args: argparse.Namespace) -> int:
    return run_deployment_action(args, ACTIONS)


def read_value(name: str) -> str:
    """The secret's value: typed at a terminal, else the whole of stdin less one final newline
    (what `echo` and most files end with)."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"Value of {name} (not shown): ")
    else:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise CliError(f"no value for {name}: give it on stdin, e.g. buildfarm secrets set APP {name} < FILE")
    return value


def _set(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    api.set_secret(deployment["id"], args.name, read_value(args.name))
    output.note(f"Set secret {args.name} of {deployment['subdomain']}")
    return 0


def _rm(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    api.delete_secret(deployment["id"], args.name)
    output.note(f"Deleted secret {args.name} of {deployment['subdomain']}")
    return 0


def _ls(api: ApiClient, deployment: dict, args: argparse.Namespace) -> int:
    names = api.secret_names(deployment["id"])
    if names:
        output.line("\n".join(names))
    else:
        output.note(f"no secrets in {deployment['subdomain']}")
    return 0


ACTIONS = {"set": _set, "rm": _rm, "ls": _ls}
