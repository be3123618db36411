"""Starts each worker process's log archiver, its timer (reaper, log archive retries, cleanup
jobs) and its heartbeat (the farm's registry of workers, stopped last), caps the memory and
processes of BuildKit's RUN steps (in the engine's cgroup parent, made first on a host where no
container has run yet), starts the guard of every RUN step's limits,
removes the scratch folders of dead workers, and gives running builds a grace period at
shutdown, however many times the stop is signalled (worker/stop_signal.py)."""

from __future__ import annotations

import logging
import time

import dramatiq

from common.config import BUILDKIT
from worker.build_memory import cap_buildkit_memory
from worker.context import worker_context
from worker.engine_watch import EngineWatch
from worker.heartbeat import HeartbeatThread
from worker.log_archiver import LogArchiver
from worker.scratch import remove_dead_workers_folders
from worker.step_cgroups import cap_buildkit_pids, make_engine_parent
from worker.step_guard import StepGuard
from worker.stop_signal import take_repeated_stop_signals_as_one
from worker.timer import TimerThread

logger = logging.getLogger("buildfarm.worker")


class WorkerLifecycle(dramatiq.Middleware):
    # Before the boot, not after it: Dramatiq starts the consumers and the worker threads first,
    # which take a queued build at once (seen: a build ran on a context of its own, which the
    # heartbeat did not report and which had no engine watch or step guard).
    def before_worker_boot(self, broker, worker) -> None:
        take_repeated_stop_signals_as_one()
        ctx = worker_context()
        remove_dead_workers_folders()
        ctx.engine_watch = EngineWatch(ctx.config.docker_host)
        ctx.engine_watch.start()
        if made := make_engine_parent(ctx.config.docker_host):
            logger.info("made the engine's cgroup parent, to cap RUN steps in: %s", " ".join(map(str, made)))
        if ctx.config.builder == BUILDKIT:
            cap_buildkit_memory(ctx.config)
        if cap_buildkit_pids(ctx.config.engine_build_pids):
            ctx.step_guard = StepGuard(ctx.config)
            ctx.step_guard.start()
        else:
            logger.warning("no cgroups of the engine on this host: RUN steps have no pids, CPU or disk limit")
        self.archiver = ctx.archiver = LogArchiver(ctx)
        self.archiver.start()
        self.timer = TimerThread(ctx)
        self.timer.start()
        self.heartbeat = HeartbeatThread(ctx, worker.worker_threads)
        self.heartbeat.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        # Running builds may finish within the grace period; past it they are handed back.
        ctx = worker_context()
        ctx.shutdown_deadline = time.time() + ctx.config.worker_grace_s
        self.timer.stopping.set()
        ctx.engine_watch.stop()
        if ctx.step_guard:
            ctx.step_guard.stopping.set()

    def after_worker_shutdown(self, broker, worker) -> None:
        # The builds have ended: the logs they left to the archiver go to S3 before the exit.
        self.archiver.stop()
        # Last: a build running through the grace period still shows in its slot.
        self.heartbeat.stop()
