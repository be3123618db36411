"""`buildfarm deploy PATH_OR_GIT_URL --subdomain NAME`, as DEPLOY_DESCRIPTION in cli/main.py says."""

from __future__ import annotations

import argparse
import os
import posixpath
import re
import sys
import tempfile
from pathlib import Path

from cli import output
from cli.api_client import ApiClient
from cli.errors import ApiError, CliError
from cli.follow import follow_and_report
from cli.packing import PackError, pack_directory
from cli.progress import ProgressBar, ProgressReader, human

# scheme://… or scp-like user@host:path
GIT_URL = re.compile(r"^([a-z][a-z0-9+.-]*://|[\w.-]+@[\w.-]+:)", re.IGNORECASE)
DEFAULT_DOCKERFILE = "Dockerfile"


def run(args: argparse.Namespace) -> int:
    source = args.source
    is_dir = Path(source).is_dir()
    if not is_dir:
        if Path(source).exists():
            raise CliError(f"{source} is not a directory")
        if not GIT_URL.match(source):
            raise CliError(f"{source}: no such directory, nor a git URL")
    elif args.branch is not None:
        raise CliError("--branch applies to a git URL, not a directory")
    elif args.status_token is not None:
        raise CliError("--status-token applies to a git URL, not a directory: only commits have a status")
    status_token = _status_token(args)
    dockerfile = posixpath.normpath(args.dockerfile) if args.dockerfile else None
    if dockerfile and (dockerfile.startswith("/") or dockerfile.split("/")[0] == ".."):
        raise CliError(f"--dockerfile {args.dockerfile}: give a path inside the build context")
    api = ApiClient.from_settings(args.api_url, args.api_token)
    try:
        if is_dir:
            deployment = _deploy_directory(api, args, Path(source), dockerfile)
        else:
            deployment = _deploy_git(api, args, source, dockerfile)
            if status_token:
                _report_status(api, args, deployment, status_token)
        build = api.deploy(deployment["id"], {"build_args": dict(args.build_args), "no_cache": args.no_cache})
        output.note(f"Queued {output.build_label(build)} of {deployment['subdomain']}")
        if not args.follow:
            output.line(build["id"])
            return 0
        return follow_and_report(api, deployment, build)
    finally:
        api.close()


Asked = list[tuple[str, str | None, str]]


def _reuse_or_create(
    api: ApiClient, args: argparse.Namespace, existing: dict | None, fields: dict, asked: Asked
) -> dict:
    """`existing` (the caller's deployment with this subdomain, checked), else a new deployment."""
    if existing is None:
        body = {"name": args.name or args.subdomain, "subdomain": args.subdomain, **fields}
        try:
            created = api.create_deployment(body)
            output.note(f"Created deployment {created['subdomain']} ({created['id']})")
            return created
        except ApiError as e:
            # Created meanwhile by another run with the same token? Else the subdomain is
            # another tenant's, and the server's message says so.
            existing = api.find_by_subdomain(args.subdomain) if e.status == 409 else None
            if existing is None:
                raise
    _same_source(existing, fields["source_type"], asked)
    output.note(f"Using deployment {existing['subdomain']} ({existing['id']})")
    return existing


def _same_source(existing: dict, source_type: str, asked: Asked) -> None:
    """Refuses to reuse a deployment whose source differs from the one asked for: the API
    cannot change a deployment's source, and building something else would be wrong."""
    name = existing["subdomain"]
    if existing["source_type"] != source_type:
        builds = "from git" if existing["source_type"] == "git" else "uploaded directories"
        asked_for = "a git repository" if source_type == "git" else "a directory"
        raise CliError(f"deployment {name} builds {builds}, not {asked_for}: choose another --subdomain")
    for option, value, field in asked:
        if value is not None and value != existing.get(field):
            raise CliError(
                f"deployment {name} has {field} {existing.get(field)!r}, not {value!r} ({option}): "
                "a deployment's source cannot be changed; choose another --subdomain"
            )


def _deploy_directory(api: ApiClient, args: argparse.Namespace, root: Path, dockerfile: str | None) -> dict:
    asked: Asked = [("--dockerfile", dockerfile, "dockerfile_path")]
    existing = api.find_by_subdomain(args.subdomain)
    if existing is not None:
        _same_source(existing, "archive", asked)
    chosen = dockerfile or (existing or {}).get("dockerfile_path") or DEFAULT_DOCKERFILE
    if not os.path.isfile(root / chosen):
        raise CliError(f"no Dockerfile at {root / chosen} (pass --dockerfile PATH, relative to {root})")

    with tempfile.TemporaryFile(prefix="buildfarm-", suffix=".tar.gz") as archive:
        try:
            packed = pack_directory(root, archive, chosen)
        except PackError as e:
            raise CliError(str(e)) from None
        size = archive.tell()
        output.note(f"Packed {packed.files} files ({human(packed.bytes_in)}) from {root} into {human(size)}")
        fields = {"source_type": "archive", "dockerfile_path": chosen}
        deployment = _reuse_or_create(api, args, existing, fields, asked)
        archive.seek(0)
        bar = ProgressBar(size)
        try:
            uploaded = api.upload(deployment["id"], ProgressReader(archive, bar))
        finally:
            bar.finish()
    output.note(f"Uploaded {human(uploaded['size'])} (sha256 {uploaded['sha256'][:12]})")
    return deployment


def _deploy_git(api: ApiClient, args: argparse.Namespace, url: str, dockerfile: str | None) -> dict:
    asked: Asked = [
        ("repository", url, "repo_url"),
        ("--branch", args.branch, "branch"),
        ("--dockerfile", dockerfile, "dockerfile_path"),
    ]
    fields = {"source_type": "git", **{field: value for _, value, field in asked if value}}
    return _reuse_or_create(api, args, api.find_by_subdomain(args.subdomain), fields, asked)


def _report_status(api: ApiClient, args: argparse.Namespace, deployment: dict, token: str) -> None:
    """Has the deployment's builds report their commit status (before this deploy's build)."""
    fields = {"provider": args.status_provider, "token": token}
    if args.status_api_url:
        fields["api_url"] = args.status_api_url
    if args.status_repository:
        fields["repository"] = args.status_repository
    reporting = api.set_commit_status(deployment["id"], fields)
    where = f"{reporting['repository']} on {reporting['provider']}"
    output.note(f"Builds of {deployment['subdomain']} report their commit status to {where}")


def _status_token(args: argparse.Namespace) -> str | None:
    """--status-token's value, or stdin's for '-'."""
    if args.status_token != "-":
        return args.status_token
    token = sys.stdin.read().strip()
    if not token:
        raise CliError("--status-token -: no token on stdin")
    return token
