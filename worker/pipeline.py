"""One build, start to end: claim → fetch source → docker build → push → finish → archive."""

from __future__ import annotations

import logging
import tempfile
import threading
import time
from pathlib import Path

from common.models import Build, BuildStatus, image_tag
from worker.archiver import archive_log
from worker.context import WorkerContext
from worker.docker_build import DockerError, build_image, push_image
from worker.logwriter import LogWriter
from worker.records import LostClaim
from worker.source import SourceError, fetch_source

logger = logging.getLogger("buildfarm.worker")

WATCH_INTERVAL_S = 0.25


class _Stopped(Exception):
    """Raised in the build thread when the watcher stopped the build (cancel or timeout)."""


class _Watcher(threading.Thread):
    """Stops a running build from outside: on a cancel request or at its deadline, it records
    why and cuts the daemon stream the build thread is blocked on."""

    def __init__(self, ctx: WorkerContext, build: Build, abort) -> None:
        super().__init__(name=f"watch-{build.id[:8]}", daemon=True)
        self.ctx = ctx
        self.build = build
        self.abort = abort
        self.deadline = time.monotonic() + ctx.config.build_timeout_s
        self.stop_reason: tuple[BuildStatus, str] | None = None
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(WATCH_INTERVAL_S):
            who = self.ctx.records.cancel_requested_by(self.build)
            if who:
                self._stop(BuildStatus.CANCELLED, f"Build cancelled by {who}")
            elif time.monotonic() > self.deadline:
                timeout = self.ctx.config.build_timeout_s
                self._stop(BuildStatus.FAILED, f"Build timed out after {timeout} s")

    def _stop(self, status: BuildStatus, reason: str) -> None:
        self.stop_reason = (status, reason)
        self._done.set()
        self.abort()

    def finish(self) -> None:
        self._done.set()

    def check(self) -> None:
        if self.stop_reason:
            raise _Stopped()


def run_build(ctx: WorkerContext, build_id: str) -> None:
    build = ctx.records.load(build_id)
    if build is None or build.status != BuildStatus.PENDING:
        # Deleted, already claimed, or already over (a redelivered message): nothing to do.
        return
    if ctx.records.claim(build, ctx.worker_id) is None:
        return
    logger.info("build %s claimed (attempt %s)", build.id, build.attempt)
    config = ctx.config
    log = LogWriter(
        ctx.redis,
        build.id,
        build.attempt,
        config.log_max_bytes,
        config.log_batch_lines,
        config.log_flush_interval_s,
    )
    docker = ctx.docker()
    watcher = _Watcher(ctx, build, docker.abort_stream)
    watcher.start()
    status, error, result = BuildStatus.FAILED, None, {}
    try:
        result = _build_and_push(ctx, build, docker, log.line, watcher)
        status = BuildStatus.SUCCESS
    except _Stopped:
        pass
    except (SourceError, DockerError) as e:
        error = str(e)
    except LostClaim:
        logger.warning("build %s: claim lost to another attempt; leaving it", build.id)
        return
    except Exception as e:  # the build must end as failed whatever broke; the trace goes to our log
        if watcher.stop_reason is None:
            logger.exception("build %s: internal error", build.id)
            error = f"Internal error in the worker: {type(e).__name__}: {e}"
    finally:
        watcher.finish()
        docker.close()
    if watcher.stop_reason:
        status, error = watcher.stop_reason
    _finish(ctx, build, log, status, error, result)


def _build_and_push(ctx: WorkerContext, build: Build, docker, log, watcher: _Watcher) -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix=f"build-{build.id[:8]}-") as scratch:
        source = fetch_source(ctx.config, ctx.s3, build, Path(scratch), log)
        watcher.check()
        if source.commit_sha != build.commit_sha:
            ctx.records.update(build, commit_sha=source.commit_sha)
        tag = image_tag(ctx.config.registry, build.subdomain, source.commit_sha)
        build_image(docker, ctx.config, source, tag, log)
    watcher.check()
    digest = push_image(docker, tag, log)
    watcher.check()
    return {"image_tag": tag, "image_digest": digest}


def _finish(
    ctx: WorkerContext,
    build: Build,
    log: LogWriter,
    status: BuildStatus,
    error: str | None,
    result: dict[str, str],
) -> None:
    if error:
        log.line(f"ERROR: {error}", footer=True)
    log.line(f"Build {status.value}", footer=True)
    fields = dict(result) if status == BuildStatus.SUCCESS else {}
    if error:
        fields["error"] = error
    # Lines first, then the status, then the end marker: a reader that sees the end of the
    # log always finds the build finished, with its whole log.
    log.drain()
    if not ctx.records.finish(build, status, **fields):
        logger.warning("build %s: could not record %s (claim lost or already over)", build.id, status)
        return
    log.end(status.value)
    logger.info("build %s %s", build.id, status.value)
    archive_log(ctx, build)
