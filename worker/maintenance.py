"""The background jobs of a worker process, on timers: the reaper and the archive retries
every few seconds; log retention (once for the farm) and the Docker disk budget (once per
engine) every housekeeping interval."""

from __future__ import annotations

import logging
import threading
import time

from common import keys
from worker.archiver import retry_archives
from worker.context import WorkerContext
from worker.housekeeping import prune_docker
from worker.reaper import reap_once
from worker.retention import expire_logs

logger = logging.getLogger("buildfarm.maintenance")


class MaintenanceThread(threading.Thread):
    def __init__(self, ctx: WorkerContext) -> None:
        super().__init__(name="maintenance", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()

    def run(self) -> None:
        config = self.ctx.config
        interval = min(config.reaper_interval_s, config.archive_retry_interval_s)
        # Housekeeping jobs: (job, the scope sharing one run per interval).
        housekeeping = [(expire_logs, "farm"), (prune_docker, config.docker_host)]
        # Not at start: a farm just started is about to build, and a prune mid-build can
        # remove the cached layers a build has just found.
        next_housekeeping = time.monotonic() + config.housekeeping_interval_s
        while not self.stopping.wait(interval):
            for job in (reap_once, retry_archives):
                self._run(job)
            if time.monotonic() >= next_housekeeping:
                next_housekeeping = time.monotonic() + config.housekeeping_interval_s
                for job, scope in housekeeping:
                    lock = keys.housekeeping_lock(job.__name__, scope)
                    if self.ctx.redis.set(
                        lock, self.ctx.worker_id, nx=True, ex=int(config.housekeeping_interval_s)
                    ):
                        self._run(job)

    def _run(self, job) -> None:
        try:
            job(self.ctx)
        except Exception:  # maintenance must outlive any one failure (Redis, S3 or Docker down)
            logger.exception("%s failed", job.__name__)
