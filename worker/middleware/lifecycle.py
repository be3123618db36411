"""Starts each worker process's timer (reaper, log archive retries, cleanup jobs), caps the
memory of BuildKit's RUN steps, removes the scratch folders of dead workers, and gives running
builds a grace period at shutdown."""

from __future__ import annotations

import time

import dramatiq

from common.config import BUILDKIT
from worker.build_memory import cap_buildkit_memory
from worker.context import worker_context
from worker.scratch import remove_dead_workers_folders
from worker.timer import TimerThread


class WorkerLifecycle(dramatiq.Middleware):
    def after_worker_boot(self, broker, worker) -> None:
        remove_dead_workers_folders()
        if worker_context().config.builder == BUILDKIT:
            cap_buildkit_memory(worker_context().config)
        self.timer = TimerThread(worker_context())
        self.timer.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        # Running builds may finish within the grace period; past it they are handed back.
        ctx = worker_context()
        ctx.shutdown_deadline = time.time() + ctx.config.worker_grace_s
        self.timer.stopping.set()
