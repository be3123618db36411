"""The log archiver of a worker process: a thread that moves the logs of the builds this
process ended to S3 (worker/log_archive.py), so that a build slot takes its next build as soon
as its build ended instead of after the upload (a large log, or a slow S3, would hold the slot
idle meanwhile). A log handed here is on the farm's list of logs to archive first: if the
process dies before its upload, the timer of any worker archives it (retry_log_archives). A
stopping process archives what it was handed before it exits, within a bound."""

from __future__ import annotations

import logging
import queue
import threading

from common.models import Build
from worker.context import WorkerContext
from worker.log_archive import archive_log, await_archive

logger = logging.getLogger("buildfarm.log_archive")

# How long a stopping process goes on archiving the logs it was handed; those left are
# archived by the timer of a worker (retry_log_archives).
DRAIN_S = 30.0


class LogArchiver(threading.Thread):
    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(name="log-archiver", daemon=True)
        self.ctx = ctx
        self.builds: queue.SimpleQueue[Build | None] = queue.SimpleQueue()

    def submit(self, build: Build) -> None:
        """Archives the ended build's log soon, off the caller's thread."""
        await_archive(self.ctx, build.id)
        self.builds.put(build)

    def run(self) -> None:
        while (build := self.builds.get()) is not None:
            try:
                archive_log(self.ctx, build)
            # The archiver must outlive any one failure (Redis down): the log is still listed.
            except Exception:
                logger.exception("log of build %s not archived yet", build.id)

    def stop(self) -> None:
        """Archives the logs handed so far (within DRAIN_S), then ends the thread."""
        self.builds.put(None)
        self.join(DRAIN_S)
