"""The timer of a worker process: the reaper and the log archive retries every few seconds;
the cleanup jobs, log retention (once for the farm) and Docker pruning (once per engine),
every cleanup interval."""

from __future__ import annotations

import logging
import threading
import time

from common.records import keys
from worker.context import WorkerContext
from worker.docker_pruning import prune_docker
from worker.log_archive import retry_log_archives
from worker.log_retention import expire_logs
from worker.reaper import reap_once

logger = logging.getLogger("buildfarm.timer")


class TimerThread(threading.Thread):
    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(name="timer", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()

    def run(self) -> None:
        config = self.ctx.config
        interval = min(config.reaper_interval_s, config.log_archive_retry_interval_s)
        cleanup_ttl_s = int(config.cleanup_interval_s)
        # Cleanup jobs: (job, the scope sharing one run per interval).
        cleanup = [(expire_logs, "farm"), (prune_docker, config.docker_host)]
        # Not at start: a farm just started is about to build, and a prune mid-build can
        # remove the cached layers a build has just found.
        next_cleanup = time.monotonic() + config.cleanup_interval_s
        while not self.stopping.wait(interval):
            for job in (reap_once, retry_log_archives):
                self._run(job)
            if time.monotonic() >= next_cleanup:
                next_cleanup = time.monotonic() + config.cleanup_interval_s
                for job, scope in cleanup:
                    lock = keys.cleanup_lock(job.__name__, scope)
                    if self.ctx.redis.set(lock, self.ctx.worker_id, nx=True, ex=cleanup_ttl_s):
                        self._run(job)

    def _run(self, job) -> None:
        try:
            job(self.ctx)
        except Exception:  # the timer must outlive any one failure (Redis, S3 or Docker down)
            logger.exception("%s failed", job.__name__)
