"""The `buildfarm` command: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import os
import re
import sys

from cli import builds, deploy, farm, notify, secrets, subdomains, tenants, tokens, usage
from cli.errors import EXIT_INTERRUPTED, CliError
from common.contract import NOTIFICATION_EVENTS
from common.integrations import PROVIDER_APIS
from common.models import LIMIT_NAMES, BuildStatus

_TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

EPILOG = """\
The API is found through BUILDFARM_URL and BUILDFARM_TOKEN (`make up` writes both to
.local/buildfarm.env) or --url and --token.

Exit status: 0 done (with --follow: the build succeeded); 1 the build failed or was
cancelled; 2 bad usage or settings; 3 the API answered with an error; 4 the API could not
be reached; 130 interrupted."""

DEPLOY_DESCRIPTION = """\
Create the deployment, or reuse yours with this subdomain, and queue a build. A directory
is packed as .tar.gz (honouring its .dockerignore) and uploaded; a git URL is built from
its branch. Prints the build id, or with --follow the build log (on stdout, as it comes)."""

# The parsers that print EPILOG keep its line breaks.
WITH_EPILOG = {"epilog": EPILOG, "formatter_class": argparse.RawDescriptionHelpFormatter}


def _tenant(value: str) -> str:
    if not _TENANT.match(value):
        raise argparse.ArgumentTypeError("a tenant is 1-63 lowercase letters, digits, '-' or '_'")
    return value


def _build_arg(value: str) -> tuple[str, str]:
    name, equals, arg = value.partition("=")
    if not equals or not name:
        raise argparse.ArgumentTypeError(f"{value!r}: give NAME=VALUE (the value may be empty)")
    return name, arg


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError("a whole number of at least 1")
    return int(value)


def _api_options(parser: argparse.ArgumentParser, default) -> None:
    group = parser.add_argument_group("API")
    group.add_argument(
        "--url", dest="api_url", metavar="URL", default=default, help="API base URL (BUILDFARM_URL)"
    )
    group.add_argument(
        "--token",
        dest="api_token",
        metavar="TOKEN",
        default=default,
        help="API token (BUILDFARM_TOKEN; prefer the variable)",
    )


def _token_commands(commands) -> None:
    token = commands.add_parser("token", help="API tokens (admin, straight in Redis)")
    token.set_defaults(handler=tokens.run)
    actions = token.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="create a token (shown once)")
    create.add_argument("--tenant", required=True, type=_tenant)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--admin", action="store_true", help="an admin's token: `farm` also shows the builds each worker runs"
    )
    actions.add_parser("list", help="list tokens (their names, never the tokens)")
    revoke = actions.add_parser("revoke", help="revoke a token")
    revoke.add_argument("token")


def _subdomain_commands(commands) -> None:
    subdomain = commands.add_parser("subdomain", help="subdomains (admin, straight in Redis)")
    subdomain.set_defaults(handler=subdomains.run)
    actions = subdomain.add_subparsers(dest="action", required=True)
    free = actions.add_parser(
        "free", help="free a subdomain a deleted deployment left reserved to its tenant, for any tenant"
    )
    free.add_argument("subdomain")


def _tenant_commands(commands) -> None:
    tenant = commands.add_parser("tenant", help="tenants' limits (admin, straight in Redis)")
    tenant.set_defaults(handler=tenants.run)
    actions = tenant.add_subparsers(dest="action", required=True)
    change = actions.add_parser(
        "set", help="set a tenant's limits: a number (0: no limit) or 'default' (the farm's); no restart"
    )
    change.add_argument("tenant", type=_tenant)
    for name in LIMIT_NAMES:
        flag = "--" + name.replace("_", "-")
        change.add_argument(flag, dest=name, type=tenants.limit_value, default=tenants.UNSET, metavar="N")
    actions.add_parser("show", help="a tenant's limits in force").add_argument("tenant", type=_tenant)
    actions.add_parser("list", help="the tenants with limits of their own")


def _usage_command(commands) -> None:
    parser = commands.add_parser(
        "usage",
        help="your builds running and queued, your limits, your build minutes this month",
        **WITH_EPILOG,
    )
    parser.set_defaults(handler=usage.run)
    parser.add_argument("--json", action="store_true", help="print JSON")
    _api_options(parser, argparse.SUPPRESS)


def _deploy_command(commands) -> None:
    parser = commands.add_parser(
        "deploy", help="build a directory or a git repository", description=DEPLOY_DESCRIPTION, **WITH_EPILOG
    )
    parser.set_defaults(handler=deploy.run)
    parser.add_argument("source", metavar="PATH_OR_GIT_URL", help="build context directory or git URL")
    parser.add_argument("--subdomain", required=True, help="the deployment's subdomain (and image name)")
    parser.add_argument("--name", help="name of a new deployment (default: the subdomain)")
    parser.add_argument(
        "--dockerfile", metavar="PATH", help="Dockerfile path in the context (default: Dockerfile)"
    )
    parser.add_argument("--branch", help="git branch (default: main)")
    parser.add_argument(
        "--build-arg",
        dest="build_args",
        metavar="NAME=VALUE",
        type=_build_arg,
        action="append",
        default=[],
        help="a Dockerfile ARG for this build, over the deployment's own (repeatable)",
    )
    parser.add_argument("--no-cache", action="store_true", help="rebuild every step, using no cached layer")
    parser.add_argument(
        "--follow", "-f", action="store_true", help="print the build log live; exit 1 if it fails"
    )
    status = parser.add_argument_group("commit status (git; docs/INTEGRATIONS.md)")
    status.add_argument(
        "--status-token",
        metavar="TOKEN",
        help="report this deployment's builds to its commit on GitHub or GitLab with this token; "
        "'-' reads it from stdin (prefer that: a command line is visible in ps)",
    )
    status.add_argument("--status-provider", choices=sorted(PROVIDER_APIS), default="github")
    status.add_argument(
        "--status-api-url", metavar="URL", help="the provider's API (default: the public one)"
    )
    status.add_argument("--status-repository", metavar="OWNER/NAME", help="default: the git URL's path")
    _api_options(parser, argparse.SUPPRESS)


def _deployment_actions(parser, handler, actions: tuple[tuple[str, str], ...]) -> dict:
    """Subcommands of `parser` that act on one deployment (ID_OR_SUBDOMAIN), run by `handler`;
    their parsers by name."""
    parser.set_defaults(handler=handler)
    subparsers = parser.add_subparsers(dest="action", required=True)
    made = {}
    for name, help in actions:
        made[name] = subparsers.add_parser(name, help=help, **WITH_EPILOG)
        made[name].add_argument("deployment", metavar="ID_OR_SUBDOMAIN")
        _api_options(made[name], argparse.SUPPRESS)
    return made


def _secrets_commands(commands) -> None:
    parser = commands.add_parser(
        "secrets",
        help="a deployment's build secrets (RUN --mount=type=secret,id=NAME)",
        description="Values are write-only: set reads one from stdin (never from the command line), "
        "ls lists names only.",
        **WITH_EPILOG,
    )
    actions = _deployment_actions(
        parser,
        secrets.run,
        (
            ("set", "set or replace a secret; its value is read from stdin"),
            ("rm", "delete a secret"),
            ("ls", "list the names of the secrets"),
        ),
    )
    for name in ("set", "rm"):
        actions[name].add_argument("name", metavar="NAME")


def _notify_commands(commands) -> None:
    parser = commands.add_parser(
        "notify", help="where a deployment's build events are sent (signed HTTP POSTs)", **WITH_EPILOG
    )
    actions = _deployment_actions(
        parser,
        notify.run,
        (
            ("add", "add a target; prints its signing secret (shown once)"),
            ("list", "list the targets"),
            ("rm", "remove a target"),
        ),
    )
    add = actions["add"]
    add.add_argument("url", metavar="TARGET_URL", help="where the events are POSTed")
    add.add_argument(
        "--event",
        dest="events",
        action="append",
        choices=NOTIFICATION_EVENTS,
        help="an event to send (repeatable; default: the builds' ends)",
    )
    add.add_argument("--format", choices=("json", "slack"), default="json")
    actions["rm"].add_argument("notification_id", metavar="NOTIFICATION_ID")


def _builds_commands(commands) -> None:
    parser = commands.add_parser("builds", help="a deployment's builds", epilog=EPILOG)
    parser.set_defaults(handler=builds.run)
    actions = parser.add_subparsers(dest="action", required=True)

    def action(name: str, help: str, *, of_one_build: bool = True) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=help, **WITH_EPILOG)
        sub.add_argument("--deployment", "-d", required=True, metavar="ID_OR_SUBDOMAIN")
        _api_options(sub, argparse.SUPPRESS)
        if of_one_build:
            sub.add_argument("build_id", metavar="BUILD_ID")
        return sub

    listing = action("list", "list builds, newest first", of_one_build=False)
    listing.add_argument("--status", choices=[s.value for s in BuildStatus])
    listing.add_argument("--limit", type=_positive, default=20, help="at most this many (default 20)")
    listing.add_argument("--json", action="store_true", help="print JSON")
    action("get", "show a build").add_argument("--json", action="store_true", help="print JSON")
    logs = action("logs", "print a build's log")
    logs.add_argument("--follow", "-f", action="store_true", help="follow it live; exit 1 if the build fails")
    action("cancel", "cancel a pending or running build")


def _farm_command(commands) -> None:
    parser = commands.add_parser(
        "farm", help="the workers alive, the queue and builds per minute", **WITH_EPILOG
    )
    parser.set_defaults(handler=farm.run)
    parser.add_argument("--json", action="store_true", help="print JSON")
    _api_options(parser, argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="buildfarm",
        description="Build farm: deploy and follow builds; administer API tokens and subdomains",
        **WITH_EPILOG,
    )
    _api_options(parser, None)
    commands = parser.add_subparsers(dest="command", required=True)
    _deploy_command(commands)
    _builds_commands(commands)
    _secrets_commands(commands)
    _notify_commands(commands)
    _token_commands(commands)
    _subdomain_commands(commands)
    _tenant_commands(commands)
    _farm_command(commands)
    _usage_command(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except CliError as e:
        print(f"buildfarm: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("buildfarm: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # stdout closed early (`| head`): stop quietly, and keep Python from complaining at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def entry() -> None:
    """The `buildfarm` console script: main(), then the end of the process once its output is
    out, without Python's teardown of every imported module, which took 0.07 s of CPU (0.13 s
    wall on a busy 2-core host) at the end of every command."""
    status = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:
        pass  # a reader that stopped early (`| head`) wants no more
    os._exit(status)


if __name__ == "__main__":
    entry()
