"""The registry of workers (common/records/workers.py) on real Redis, through both adapters: a
heartbeat lists a worker with the builds it runs, a silent one turns stale then expires, a
stopping one leaves at once; the builds that ended within the hour are counted."""

import time
import uuid

import pytest

from common.models import BuildStatus
from common.records import builds, deployments, keys, workers
from tests.test_integration_records import new_build, new_deployment


def process(**overrides) -> workers.WorkerProcess:
    values = {
        "worker_id": f"host-{uuid.uuid4().hex[:6]}:{1000}",
        "host": "host-a",
        "pid": 1000,
        "threads": 4,
        "builder": "buildkit",
        "engine_version": "20.10.24",
        "started_at": "2026-12-01T00:00:00.000Z",
        "heartbeat_interval_s": 0.2,
        "expiry_s": 1.5,
    }
    return workers.WorkerProcess(**{**values, **overrides})


def listed(run, worker_id: str) -> workers.WorkerState | None:
    return next((w for w in run(workers.read_farm()).workers if w.worker_id == worker_id), None)


@pytest.fixture
def deployment(run):
    return run(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))


def test_a_heartbeat_lists_the_worker_with_the_builds_its_slots_run(run, deployment):
    # Given a worker running one build of a deployment
    build = run(builds.create_build(new_build(deployment)))
    worker = process()
    # When it heartbeats
    run(workers.heartbeat(worker, [build.id]))
    # Then the farm lists it, fresh, with the build in a slot
    state = listed(run, worker.worker_id)
    assert (state.host, state.pid, state.threads, state.engine_version) == ("host-a", 1000, 4, "20.10.24")
    assert not state.stale and state.last_heartbeat.endswith("Z")
    assert state.builds == [workers.RunningBuild(build.id, deployment.id, build.number)]
    # ...and once the build is over, its slot is free
    run(workers.heartbeat(worker, []))
    assert listed(run, worker.worker_id).builds == []


def test_a_silent_worker_turns_stale_then_disappears_and_a_stopping_one_leaves_at_once(run):
    silent, stopping = process(), process(worker_id=f"host-b:{uuid.uuid4().hex[:6]}")
    run(workers.heartbeat(silent, []))
    run(workers.heartbeat(stopping, []))
    run(workers.remove_worker(stopping.worker_id))
    assert listed(run, stopping.worker_id) is None
    # 3 missed beats of 0.2 s: stale; 1.5 s after the last beat: gone
    time.sleep(0.7)
    assert listed(run, silent.worker_id).stale
    time.sleep(1.0)
    assert listed(run, silent.worker_id) is None


def test_the_queue_and_the_builds_that_ended_within_the_hour_are_counted(run, redis_client, deployment):
    before = run(workers.read_farm())
    queued = run(builds.create_build(new_build(deployment)))
    waiting = run(workers.read_farm())
    assert waiting.queued == before.queued + 1 and waiting.oldest_wait_s >= 0
    run(builds.transition(queued.id, deployment.id, BuildStatus.CANCELLED))
    after = run(workers.read_farm())
    assert after.queued == before.queued and after.finished_in_window == before.finished_in_window + 1
    # An end older than the hour is dropped by the next one
    redis_client.zadd(keys.FINISHED_BUILDS, {"ancient": 1})
    other = run(builds.create_build(new_build(deployment)))
    run(builds.transition(other.id, deployment.id, BuildStatus.CANCELLED))
    assert redis_client.zscore(keys.FINISHED_BUILDS, "ancient") is None
