"""The heartbeat of a worker process: every BUILDFARM_WORKER_HEARTBEAT_S, and as soon as a build
starts or ends, it rewrites the process's record in the farm's registry of workers (GET /farm),
which expires BUILDFARM_WORKER_EXPIRY_S after the last beat; a stopping process removes it."""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import replace

import docker

from common.models import utc_now
from common.records.workers import WorkerProcess, heartbeat, remove_worker
from worker.context import WorkerContext

logger = logging.getLogger("buildfarm.heartbeat")
ENGINE_TIMEOUT_S = 2


def engine_version(docker_host: str) -> str:
    """The Docker engine's version; empty while it does not answer."""
    try:
        with docker.APIClient(base_url=docker_host, version="auto", timeout=ENGINE_TIMEOUT_S) as client:
            return str(client.version().get("Version", ""))
    except docker.errors.DockerException:
        return ""


class HeartbeatThread(threading.Thread):
    def __init__(self, ctx: WorkerContext, threads: int) -> None:
        super().__init__(name="heartbeat", daemon=True)
        self.ctx = ctx
        self.stopping = threading.Event()
        config = ctx.config
        self.process = WorkerProcess(
            worker_id=ctx.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            threads=threads,
            builder=config.builder,
            engine_version="",
            started_at=utc_now(),
            heartbeat_interval_s=config.worker_heartbeat_s,
            expiry_s=config.worker_expiry_s,
        )

    def run(self) -> None:
        running = self.ctx.running
        while not self.stopping.is_set():
            running.changed.clear()
            self._beat(running.ids())
            running.changed.wait(self.ctx.config.worker_heartbeat_s)

    def _beat(self, builds: list[str]) -> None:
        if not self.process.engine_version:
            self.process = replace(self.process, engine_version=engine_version(self.ctx.config.docker_host))
        try:
            self.ctx.records.run(heartbeat(self.process, builds))
        except Exception:  # the heartbeat must outlive any one failure (Redis down)
            logger.exception("heartbeat failed")

    def stop(self) -> None:
        """Stops the beats and takes the process off the farm."""
        self.stopping.set()
        self.ctx.running.changed.set()
        self.join(timeout=5)
        try:
            self.ctx.records.run(remove_worker(self.ctx.worker_id))
        except Exception:  # its record expires anyway
            logger.exception("could not remove this worker's record")
