"""Fetches a build's source into a fresh scratch directory: an uploaded archive (checked
against its SHA-256, extracted safely) or a git clone (no prompts, no option injection, only to
hosts the outbound address rule allows, at the very addresses it checked, no redirects)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from minio import Minio

from common.archive import ArchiveError, extract_archive
from common.config import Config
from common.models import Build, SourceType
from common.outbound import OutboundRefused, OutboundRule, redact_userinfo
from common.s3 import archive_key, dockerfile_key
from worker.build_types import missing_dockerfile
from worker.disk_space import scratch_over_budget
from worker.infra_retry import Retry

INLINE_DOCKERFILE = ".buildfarm.Dockerfile"
CHUNK = 1024 * 1024
GIT_POLL_S = 0.2
# git's messages (progress, "remote:" lines) go to a file: capped, and only their end is read.
GIT_MESSAGES_MAX_BYTES = 16 * 1024 * 1024
GIT_MESSAGE_TAIL_BYTES = 4096


class SourceError(Exception):
    """Raised when a build's source cannot be fetched or is unsafe; the message is for the log."""


@dataclass(frozen=True)
class Source:
    context_dir: Path
    dockerfile: str
    commit_sha: str

    def dockerfile_text(self, max_bytes: int) -> str:
        """The Dockerfile the engine will read (its path was checked to stay in the context)."""
        with (self.context_dir / self.dockerfile).open("rb") as file:
            data = file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise SourceError(f"The Dockerfile '{self.dockerfile}' is larger than {max_bytes} bytes")
        return data.decode("utf-8", "replace")


def fetch_source(
    config: Config,
    s3: Minio,
    build: Build,
    scratch: Path,
    log: Callable[[str], None],
    retry_s3: Retry,
    outbound: OutboundRule | None = None,
) -> Source:
    """`retry_s3` tries each download from S3 again while S3 does not answer; `outbound`: where
    git may connect, the farm's rule (BUILDFARM_OUTBOUND_ALLOW) by default."""
    context_dir = scratch / "context"
    context_dir.mkdir()
    if build.source_type == SourceType.ARCHIVE:
        commit_sha = _fetch_archive(config, s3, build, scratch, context_dir, log, retry_s3)
    else:
        outbound = outbound or OutboundRule(config.outbound_networks)
        commit_sha = _clone(config, build, context_dir, log, _connect_options(outbound, build.repo_url))
    dockerfile = build.dockerfile_path
    if build.inline_dockerfile:
        key = dockerfile_key(build.deployment_id, build.commit_sha)
        retry_s3(lambda: s3.fget_object(config.sources_bucket, key, str(context_dir / INLINE_DOCKERFILE)))
        dockerfile = INLINE_DOCKERFILE
        log("Using the Dockerfile uploaded with the archive")
    if reason := scratch_over_budget(scratch, config.build_disk_bytes):
        raise SourceError(reason)
    _check_dockerfile(context_dir, dockerfile)
    return Source(context_dir, dockerfile, commit_sha)


def _check_dockerfile(context_dir: Path, dockerfile: str) -> None:
    path = (context_dir / dockerfile).resolve()
    if not path.is_relative_to(context_dir.resolve()):
        raise SourceError(f"Dockerfile path '{dockerfile}' points outside the build context")
    if not path.is_file():
        raise SourceError(missing_dockerfile(dockerfile))


def _fetch_archive(
    config: Config,
    s3: Minio,
    build: Build,
    scratch: Path,
    context_dir: Path,
    log: Callable[[str], None],
    retry_s3: Retry,
) -> str:
    archive = scratch / "source.tar.gz"

    def download() -> str:
        """The archive into its file, from its first byte; returns its SHA-256."""
        digest = hashlib.sha256()
        response = s3.get_object(config.sources_bucket, archive_key(build.deployment_id, build.commit_sha))
        try:
            with archive.open("wb") as out:
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
        finally:
            response.close()
            response.release_conn()
        return digest.hexdigest()

    if retry_s3(download) != build.commit_sha:
        raise SourceError("The stored archive does not match its SHA-256: refusing to build it")
    log(f"Fetched source archive {build.commit_sha[:12]} ({archive.stat().st_size} bytes)")
    try:
        extract_archive(archive, context_dir, config.max_archive_entries, config.max_extracted_bytes)
    except ArchiveError as e:
        raise SourceError(str(e)) from None
    return build.commit_sha


def _connect_options(outbound: OutboundRule, url: str) -> list[str]:
    """git options that connect to `url`'s host only at the addresses the rule checked just now
    (http(s): curl is handed them, so a DNS answer that changed since cannot win) and follow no
    redirect (a redirect would lead elsewhere unchecked)."""
    try:
        target = outbound.check_url(url)
    except OutboundRefused as e:
        raise SourceError(f"Refused to clone {redact_userinfo(url)}: {e}") from None
    options = ["-c", "http.followRedirects=false"]
    if target is not None and target.addresses != (target.host,):
        addresses = ",".join(f"[{a}]" if ":" in a else a for a in target.addresses)
        options += ["-c", f"http.curloptResolve={target.host}:{target.port}:{addresses}"]
    return options


def _clone(
    config: Config, build: Build, context_dir: Path, log: Callable[[str], None], connect: list[str]
) -> str:
    """Clones the deployment's branch (shallow where the server allows it) and resolves the
    commit to its full SHA; a requested commit is checked out from a full clone."""
    log(f"Cloning {redact_userinfo(build.repo_url)} (branch {build.branch})")
    shallow = build.commit_sha is None
    try:
        _clone_into(config, build, context_dir, shallow, connect)
    except SourceError as e:
        if not (shallow and "shallow" in str(e)):
            raise
        # Git's "dumb" HTTP transport cannot do shallow clones.
        shutil.rmtree(context_dir)
        _clone_into(config, build, context_dir, False, connect)
    if build.commit_sha:
        _git(config, "checkout", "-C", str(context_dir), "checkout", "--quiet", "--detach", build.commit_sha)
    sha = _git(config, "rev-parse", "-C", str(context_dir), "rev-parse", "--verify", "HEAD^{commit}").strip()
    shutil.rmtree(context_dir / ".git")
    log(f"Checked out commit {sha}")
    return sha


def _clone_into(config: Config, build: Build, context_dir: Path, shallow: bool, connect: list[str]) -> None:
    options = ["--quiet", "--no-tags", "--single-branch", "--branch", build.branch]
    if shallow:
        options += ["--depth", "1"]
    # `--` ends the options: a URL can never be read as one.
    clone = ["clone", *options, "--", build.repo_url, str(context_dir)]
    _git(config, "clone", *connect, *clone, watch=context_dir)


def _git(config: Config, what: str, *args: str, watch: Path | None = None) -> str:
    """Runs git without prompts, hooks or system config, with only the allowed transports,
    within the time cap and, for `watch`, the size cap."""
    protocol_rules = ["-c", "protocol.allow=never"]
    for scheme in sorted(config.git_schemes):
        protocol_rules += ["-c", f"protocol.{scheme}.allow=always"]
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_ASKPASS": "/bin/false",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        command = ["git", *protocol_rules, "-c", "core.hooksPath=/dev/null", *args]
        process = subprocess.Popen(command, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + config.git_timeout_s
        too_big = f"git {what} stopped: the repository is larger than {config.max_extracted_bytes} bytes"
        while process.poll() is None:
            problem = None
            if time.monotonic() > deadline:
                problem = f"git {what} timed out after {config.git_timeout_s} s"
            elif watch is not None and _size(watch) > config.max_extracted_bytes:
                problem = too_big
            elif os.fstat(err.fileno()).st_size > GIT_MESSAGES_MAX_BYTES:
                problem = f"git {what} stopped: more than {GIT_MESSAGES_MAX_BYTES} bytes of messages"
            if problem:
                process.kill()
                process.wait()
                raise SourceError(problem)
            time.sleep(GIT_POLL_S)
        if watch is not None and _size(watch) > config.max_extracted_bytes:
            raise SourceError(too_big)
        out.seek(0)
        if process.returncode != 0:
            # Only the end: what a hostile server prints is not read whole into memory.
            err.seek(max(0, os.fstat(err.fileno()).st_size - GIT_MESSAGE_TAIL_BYTES))
            message = err.read().decode(errors="replace").strip().splitlines()
            said = redact_userinfo(" ".join(message[-3:]))
            raise SourceError(f"git {what} failed: {said or process.returncode}")
        return out.read().decode()


def _size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total
