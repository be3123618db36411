"""The build step of a build, by the farm's builder. With BuildKit (the default) an uploaded
archive goes to the engine as stored (worker/archive_stream.py) and a git source is a cloned
folder; the build gets its args, secrets and the cache of its deployment's last images. The
classic builder (BUILDFARM_BUILDER=classic) builds an extracted folder, with args only. Before
the engine can start either, the images the Dockerfile names are checked (worker/image_policy.py)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.config import CLASSIC
from common.models import Build, SourceType, image_tag
from common.outbound import OutboundRule
from worker.archive_dockerfile import ArchiveDockerfile
from worker.archive_stream import fetch_inline_dockerfile, inline_dockerfile_name, stream_archive, tar_member
from worker.build_types import BuildOutcome, BuildSpec, InfrastructureFault, Log
from worker.buildkit import BuildKitRun, ContextLost
from worker.context import WorkerContext
from worker.docker_build import AbortableAPIClient, build_image
from worker.image_policy import FarmRegistry, check_dockerfile
from worker.infra_retry import Retry
from worker.source import fetch_source

# Tries of a build whose context the engine lost (worker/buildkit.py ContextLost).
CONTEXT_ATTEMPTS = 3


@dataclass(frozen=True)
class Built:
    tag: str
    outcome: BuildOutcome
    # Fetching the source (for a streamed archive: until the engine had all of it), then building.
    source_s: float
    build_s: float


def build_step(
    ctx: WorkerContext,
    build: Build,
    engines: tuple[BuildKitRun, AbortableAPIClient],
    scratch: Path,
    secrets: dict[str, str],
    log: Log,
    retry_s3: Retry,
) -> Built:
    """`retry_s3` tries a step that reads the source from S3 again while S3 does not answer."""
    buildkit, docker = engines
    started = time.monotonic()
    options = {"build_args": build.args(), "no_cache": build.no_cache}
    check_images = _image_check(ctx, build, log)
    if ctx.config.builder == CLASSIC:
        if secrets:
            log("Warning: the classic builder cannot mount build secrets (BUILDFARM_BUILDER=classic)")
        source = fetch_source(ctx.config, ctx.s3, build, scratch, log, retry_s3)
        _resolved(ctx, build, source.commit_sha)
        check_images(source.dockerfile_text(ctx.config.max_dockerfile_bytes))
        spec = BuildSpec(_tag(ctx, build), source.dockerfile, **options)
        fetched = time.monotonic()
        watch = ctx.step_guard.watch_container if ctx.step_guard else None
        return Built(
            spec.tag,
            build_image(docker, ctx.config, spec, source.context_dir, log, watch),
            fetched - started,
            time.monotonic() - fetched,
        )
    options.update(secrets=_secret_files(secrets, scratch), cache_from=tuple(ctx.records.cache_images(build)))
    if build.source_type == SourceType.ARCHIVE:
        dockerfile, head = build.dockerfile_path, b""
        if build.inline_dockerfile:
            dockerfile = inline_dockerfile_name(build)
            text = retry_s3(lambda: fetch_inline_dockerfile(ctx.config, ctx.s3, build))
            log("Using the Dockerfile uploaded with the archive")
            check_images(text.decode("utf-8", "replace"))
            head = tar_member(dockerfile, text)
        spec = BuildSpec(_tag(ctx, build), dockerfile, **options)

        def feed(out) -> int:
            # The archive's own Dockerfile is checked as it streams, before its last chunk.
            found = None
            if not build.inline_dockerfile:
                found = ArchiveDockerfile(build.dockerfile_path, ctx.config.max_dockerfile_bytes)
            return stream_archive(ctx.config, ctx.s3, build, head, out, found, check_images)

        for attempt in range(1, CONTEXT_ATTEMPTS + 1):
            log(f"Streaming source archive {build.commit_sha[:12]} to the engine")
            began = time.monotonic()
            try:
                # A feed that S3 fails kills the CLI before the engine has the whole context
                # (nothing is built): the stream is sent again from its start.
                outcome = retry_s3(lambda: buildkit.run(spec, feed, scratch, log))
                break
            except ContextLost as e:
                if attempt == CONTEXT_ATTEMPTS:
                    raise InfrastructureFault(
                        f"The Docker engine lost the build context {attempt} times: nothing was built ({e})"
                    ) from None
                log("The engine lost the build context before reading it (nothing built): sending it again")
        source_s = began - started + outcome.context_s
        return Built(spec.tag, outcome, source_s, time.monotonic() - started - source_s)
    source = fetch_source(ctx.config, ctx.s3, build, scratch, log, retry_s3)
    _resolved(ctx, build, source.commit_sha)
    check_images(source.dockerfile_text(ctx.config.max_dockerfile_bytes))
    spec = BuildSpec(_tag(ctx, build), source.dockerfile, **options)
    fetched = time.monotonic()
    outcome = buildkit.run(spec, source.context_dir, scratch, log)
    return Built(spec.tag, outcome, fetched - started, time.monotonic() - fetched)


def _image_check(ctx: WorkerContext, build: Build, log: Log) -> Callable[[str], None]:
    """Checks a Dockerfile's text for the build (ImageRefused: the user's mistake)."""
    registry = FarmRegistry(ctx.config.registry)
    outbound = OutboundRule(ctx.config.outbound_networks)
    holders: dict[str, str | None] = {}

    def holder_of(subdomain: str) -> str | None:
        if subdomain not in holders:
            holders[subdomain] = ctx.records.subdomain_holder(subdomain)
        return holders[subdomain]

    def check(text: str) -> None:
        count = check_dockerfile(text, build.args(), build.tenant, registry, holder_of, outbound)
        log(f"The Dockerfile names {count} image(s) or URL(s), each one this build may use")

    return check


def _tag(ctx: WorkerContext, build: Build) -> str:
    return image_tag(ctx.config.registry, build.subdomain, build.commit_sha)


def _resolved(ctx: WorkerContext, build: Build, commit_sha: str) -> None:
    """Records the commit a git build resolved its branch to."""
    if commit_sha != build.commit_sha:
        ctx.records.update(build, commit_sha=commit_sha)


def _secret_files(secrets: dict[str, str], scratch: Path) -> dict[str, Path]:
    """Each secret in a file only the worker can read, in the build's scratch folder (removed
    with it); BuildKit mounts it into the RUN steps that ask, never into a layer."""
    if not secrets:
        return {}
    folder = scratch / "secrets"
    folder.mkdir(mode=0o700)
    files = {}
    for name, value in secrets.items():
        files[name] = folder / name
        descriptor = os.open(files[name], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.write(value)
    return files
