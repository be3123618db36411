"""The registry of worker processes, written once: each process heartbeats its record (host,
threads, engine, the builds it runs), which expires when the heartbeats stop; and the farm read
at one instant (workers, queue, builds that ended within the hour), in one round trip."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from common.config import STALE_AFTER_HEARTBEATS
from common.records import fields, keys, scripts
from common.records.call import Call, pairs


@dataclass(frozen=True)
class _Worker:
    """A worker process: who and where it is, and how it builds."""

    worker_id: str
    host: str
    pid: int
    threads: int
    builder: str
    engine_version: str
    started_at: str


@dataclass(frozen=True)
class WorkerProcess(_Worker):
    """What a worker process says of itself in each heartbeat."""

    heartbeat_interval_s: float
    expiry_s: float

    def record(self, builds: list[str]) -> dict[str, str]:
        return {
            fields.WORKER_HOST: self.host,
            fields.WORKER_PID: str(self.pid),
            fields.WORKER_THREADS: str(self.threads),
            fields.WORKER_BUILDER: self.builder,
            fields.WORKER_ENGINE_VERSION: self.engine_version,
            fields.WORKER_STARTED_AT: self.started_at,
            fields.WORKER_HEARTBEAT_INTERVAL_MS: str(int(self.heartbeat_interval_s * 1000)),
            fields.WORKER_BUILDS: ",".join(builds),
        }


@dataclass(frozen=True)
class RunningBuild:
    build_id: str
    deployment_id: str
    number: int


@dataclass(frozen=True)
class WorkerState(_Worker):
    """A worker process as the farm last heard from it."""

    last_heartbeat: str
    stale: bool
    builds: list[RunningBuild] = field(default_factory=list)


@dataclass(frozen=True)
class FarmState:
    workers: list[WorkerState]
    queued: int
    # How long the oldest pending build has waited (s); None with an empty queue.
    oldest_wait_s: float | None
    building: int
    finished_in_window: int
    window_s: float


def heartbeat(process: WorkerProcess, builds: list[str]) -> Call[int]:
    """Rewrites the process's record with the builds it runs now; the Redis time of the beat (ms)."""
    return Call(
        int,
        script=scripts.HEARTBEAT,
        keys=[keys.worker(process.worker_id), keys.WORKERS],
        args=[process.worker_id, int(process.expiry_s * 1000), *pairs(process.record(builds))],
    )


def remove_worker(worker_id: str) -> Call[None]:
    """Takes a stopping process off the farm at once, rather than when its record expires."""
    commands = [("DEL", keys.worker(worker_id)), ("ZREM", keys.WORKERS, worker_id)]
    return Call(lambda _: None, commands=commands)


def _time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _worker(now_ms: int, worker_id: bytes, flat: list[bytes], running: list[list[bytes]]) -> WorkerState:
    record = {name.decode(): value.decode() for name, value in zip(flat[::2], flat[1::2], strict=True)}
    beat_ms = int(record[fields.WORKER_HEARTBEAT_MS])
    interval_ms = int(record.get(fields.WORKER_HEARTBEAT_INTERVAL_MS) or 0)
    return WorkerState(
        worker_id=worker_id.decode(),
        host=record.get(fields.WORKER_HOST, ""),
        pid=int(record.get(fields.WORKER_PID) or 0),
        threads=int(record.get(fields.WORKER_THREADS) or 0),
        builder=record.get(fields.WORKER_BUILDER, ""),
        engine_version=record.get(fields.WORKER_ENGINE_VERSION, ""),
        started_at=record.get(fields.WORKER_STARTED_AT, ""),
        last_heartbeat=_time(beat_ms),
        stale=now_ms - beat_ms > STALE_AFTER_HEARTBEATS * interval_ms,
        # A build deleted meanwhile has no deployment any more: it is not shown.
        builds=[
            RunningBuild(build.decode(), deployment.decode(), int(number))
            for build, deployment, number in running
            if deployment
        ],
    )


def read_farm() -> Call[FarmState]:
    """The workers whose records have not expired, the queue, and the builds that ended within
    the last hour, at one instant of the Redis clock."""

    def parse(reply: list) -> FarmState:
        now_ms, queued, oldest, building, finished = reply[:5]
        return FarmState(
            workers=[_worker(now_ms, *row) for row in reply[5:]],
            queued=queued,
            oldest_wait_s=(now_ms - float(oldest)) / 1000 if oldest else None,
            building=building,
            finished_in_window=finished,
            window_s=scripts.FINISHED_WINDOW_MS / 1000,
        )

    status_sets = [keys.active_builds(status) for status in keys.ACTIVE_STATUSES]
    return Call(
        parse,
        script=scripts.FARM,
        keys=[keys.WORKERS, *status_sets, keys.FINISHED_BUILDS],
        args=[keys.WORKER_PREFIX, keys.BUILD_PREFIX, scripts.FINISHED_WINDOW_MS],
    )
