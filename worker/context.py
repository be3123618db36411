"""What a worker process needs to run builds: config and its connections, made once."""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dramatiq
import redis
from minio import Minio

from common.broker import build_message
from common.config import Config
from common.models import Build
from common.redis_clients import sync_redis
from common.s3 import create_s3, ensure_buckets
from worker.engine_watch import EngineWatch
from worker.logwriter import LogWriter
from worker.parts_down import PartsDown
from worker.records import BuildRecords
from worker.running_builds import RunningBuilds
from worker.step_guard import StepGuard

if TYPE_CHECKING:
    from worker.log_archiver import LogArchiver


@dataclass
class WorkerContext:
    config: Config
    redis: redis.Redis
    s3: Minio
    records: BuildRecords = field(init=False)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    # Set when the process is asked to stop: running builds may go on until then.
    shutdown_deadline: float | None = None
    # Set at boot where the engine's cgroups are on this host (worker/middleware/lifecycle.py).
    step_guard: StepGuard | None = None
    # Set at boot: the thread that archives the logs of the builds this process ended
    # (worker/log_archiver.py); without it (a context of the tests) a log is archived in the caller.
    archiver: LogArchiver | None = None
    # The builds this process runs now, which its heartbeat reports (worker/heartbeat.py).
    running: RunningBuilds = field(default_factory=RunningBuilds)
    # Started at boot: the engine's event stream, what tells an engine restarted mid-build.
    engine_watch: EngineWatch | None = None
    # The parts of the farm this worker did not reach: it claims no build meanwhile.
    parts_down: PartsDown = field(init=False)

    def __post_init__(self) -> None:
        self.records = BuildRecords(self.redis)
        self.parts_down = PartsDown(self.config)

    def log_writer(self, build: Build) -> LogWriter:
        """The writer of the build's log, fenced by the attempt that holds the build."""
        return LogWriter(self.redis, build.id, build.attempt, self.config)

    def requeue(self, build_id: str, delay_ms: int | None = None) -> None:
        dramatiq.get_broker().enqueue(build_message(self.config, build_id), delay=delay_ms)

    def heartbeat(self) -> None:
        """Any broker command refreshes this process's Dramatiq heartbeat: without one, a
        process whose threads are all busy stops heartbeating, and after a minute another
        process requeues the messages it is still running (Dramatiq issue #692)."""
        dramatiq.get_broker().do_qsize(self.config.queue_name)

    def shutting_down(self) -> bool:
        return self.shutdown_deadline is not None and time.time() >= self.shutdown_deadline


_made: list[WorkerContext] = []
_making = threading.Lock()


def worker_context() -> WorkerContext:
    """The process's one context, whichever thread asks first (functools.cache would make one
    per thread that asks while the first is being made)."""
    with _making:
        if not _made:
            config = Config.from_env()
            s3 = create_s3(config, retried_by_caller=True)
            ensure_buckets(s3, config)
            _made.append(WorkerContext(config, sync_redis(config.redis_url), s3))
        return _made[0]
