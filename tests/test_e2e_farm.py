"""GET /api/v1/farm against the real farm: the test farm's worker process heartbeats into the
registry (host, threads, engine), a running build shows in its slot for an admin and only as
counts for a tenant, a killed worker turns stale then disappears, a stopped one leaves at once."""

from __future__ import annotations

import os
import signal
import socket
import time

import httpx
import pytest

from common.tokens import create_token
from tests.conftest import start_worker, wait_until
from tests.farm import (
    FAST_HEARTBEAT,
    archive_deployment,
    build_in_its_run_step,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    wait_for_status,
    worker_ids,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def fast_worker(redis_client, s3, docker_client, logs_dir):
    process = start_worker(logs_dir, name="farm", **FAST_HEARTBEAT)
    wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
    yield process
    process.stop()


@pytest.fixture
def admin(api_url, redis_client):
    token = create_token(redis_client, "ops", "farm-tests", admin=True)
    with httpx.Client(base_url=api_url + "/api/v1", headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


def farm(client) -> dict:
    response = client.get("/farm")
    assert response.status_code == 200, response.text
    return response.json()


def listed(client, worker_id: str) -> dict | None:
    return next((w for w in farm(client)["workers"] if w["id"] == worker_id), None)


def admin_sees(admin, worker_id: str, build: dict, held: bool) -> dict:
    """The worker as an admin sees it once the build holds a slot (or no longer does), within
    2 s however loaded the host: the claim and the end wake the heartbeat."""
    slot = {"build_id": build["id"], "deployment_id": build["deployment_id"], "number": build["number"]}
    try:
        return wait_until(lambda: (w := listed(admin, worker_id)) and (slot in w["builds"]) == held and w, 2)
    except AssertionError:
        what = "in a slot" if held else "out of its slot"
        raise AssertionError(f"build {build['id']} not {what} in 2 s: {listed(admin, worker_id)}") from None


def test_the_farms_worker_is_listed_with_its_threads_engine_and_heartbeat(client, fast_worker, docker_client):
    [worker_id] = worker_ids(fast_worker)
    worker = wait_until(lambda: listed(client, worker_id), 10, what="the worker in GET /farm")
    assert (worker["host"], worker["threads"], worker["builder"]) == (socket.gethostname(), 2, "buildkit")
    assert worker["engine_version"] == docker_client.version()["Version"]
    assert worker["stale"] is False and worker["slots_in_use"] == 0
    host = next(h for h in farm(client)["hosts"] if h["host"] == socket.gethostname())
    assert host["processes"] >= 1 and host["threads"] == 2


def test_a_running_build_is_in_its_slot_for_an_admin_and_only_counted_for_a_tenant(
    client, admin, fast_worker
):
    [worker_id] = worker_ids(fast_worker)
    before = farm(client)["builds_last_hour"]
    build = build_in_its_run_step(client, "echo in-a-slot && sleep 60")
    try:
        # An admin: the build in its slot
        worker = admin_sees(admin, worker_id, build, True)
        assert worker["slots_in_use"] == len(worker["builds"]) == 1
        # A tenant: the slot in use counted, the build not named
        as_tenant = client.get("/farm")
        worker = next(w for w in as_tenant.json()["workers"] if w["id"] == worker_id)
        assert worker["slots_in_use"] == 1 and "builds" not in worker
        assert as_tenant.json()["queue"]["running"] >= 1 and build["id"] not in as_tenant.text
    finally:
        client.post(build_path(build) + "/cancel")
    wait_for_status(client, build)
    # Once it ended, its slot is free at once and the build is counted
    assert admin_sees(admin, worker_id, build, False)["slots_in_use"] == 0
    assert farm(client)["builds_last_hour"] >= before + 1


def test_a_worker_that_boots_with_a_build_waiting_runs_it_in_a_slot_it_reports(
    client, admin, fast_worker, logs_dir
):
    # Given a build queued while no worker runs
    fast_worker.stop()
    build = deploy(client, archive_deployment(client, context_archive(dockerfile("echo waited && sleep 60"))))
    # When a worker boots: its threads take the build at once, before Dramatiq's boot ends
    booting = start_worker(logs_dir, name="farm-boot", **FAST_HEARTBEAT)
    try:
        wait_until(lambda: "ready for action" in booting.tail(), 30, what="the worker to boot")
        [worker_id] = worker_ids(booting)
        # Then the build runs in a slot its heartbeat reports (the boot's context is the builds'),
        # and the worker's set-up (heartbeat, engine watch, step guard) was done before the claim
        worker = admin_sees(admin, worker_id, build, True)
        claimed = client.get(build_path(build)).json()["started_at"]
        assert worker["started_at"] <= claimed, (worker["started_at"], claimed)
    finally:
        client.post(build_path(build) + "/cancel")
        wait_for_status(client, build)
        booting.stop()
        restarted_from = fast_worker.log.stat().st_size
        fast_worker.start()
    # And the worker stops cleanly: the engine watch it started at boot was there to stop
    assert "Unexpected failure" not in booting.log.read_text()
    wait_until(
        lambda: b"ready for action" in fast_worker.log.read_bytes()[restarted_from:],
        30,
        what="the module's worker to restart",
    )


def test_a_killed_worker_greys_out_then_disappears_and_a_stopped_one_leaves_at_once(
    client, fast_worker, logs_dir, capsys
):
    killed = start_worker(logs_dir, name="farm-killed", **FAST_HEARTBEAT)
    stopped = start_worker(logs_dir, name="farm-stopped", **FAST_HEARTBEAT)
    try:
        for process in (killed, stopped):
            wait_until(lambda p=process: "ready for action" in p.tail(), 30, what="a worker to boot")
        [killed_id], [stopped_id] = worker_ids(killed), worker_ids(stopped)
        wait_until(lambda: listed(client, killed_id) and listed(client, stopped_id), 10, what="both listed")

        # When one worker is killed (no goodbye)
        killed.stop(signal.SIGKILL)
        started = time.monotonic()
        # Then it turns stale after 3 missed beats of 0.5 s
        wait_until(lambda: listed(client, killed_id)["stale"], 5, interval=0.05, what="stale")
        stale_after = time.monotonic() - started

        # ...while one stopped as an orchestrator stops it (SIGTERM to the master alone, which
        # passes it on once) leaves at once
        os.kill(stopped.pid, signal.SIGTERM)
        stopped.handle.wait(30)
        assert listed(client, stopped_id) is None

        # ...and the killed one leaves when its record expires, 4 s after its last beat
        wait_until(lambda: listed(client, killed_id) is None, 6, interval=0.05, what="gone")
        gone_after = time.monotonic() - started
        with capsys.disabled():
            print(f"\nkilled worker: stale after {stale_after:.1f} s, gone after {gone_after:.1f} s")
        assert 1.0 <= stale_after <= 2.5 and 3.0 <= gone_after <= 4.5
    finally:
        killed.stop()
        stopped.stop()


def test_a_worker_stopped_through_its_whole_process_group_stops_gracefully(
    logs_dir, redis_client, s3, docker_client
):
    # systemd's default (KillMode=control-group) signals every process of the worker: each
    # Dramatiq process gets SIGTERM twice, once directly and once from its master.
    worker = start_worker(logs_dir, name="farm-group-stopped", processes=2)
    try:
        wait_until(lambda: worker.tail().count("ready for action") >= 2, 30, what="the worker to boot")
        os.killpg(worker.pid, signal.SIGTERM)
        status = worker.handle.wait(30)
    finally:
        worker.stop(signal.SIGKILL)
    # Then each process shuts down as after one SIGTERM: its prefetched messages go back to the
    # queue and its builds get their grace, instead of Dramatiq's "kill now" on a second one.
    log = worker.log.read_text(errors="replace")
    assert log.count("Stopping worker process") == 2
    assert "Killing worker process" not in log
    assert status == 0
