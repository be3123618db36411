"""Fault injection on real processes: cancel, timeouts, a worker killed mid-build, graceful
shutdown, Redis and the API restarted, per-deployment ordering and idempotent deploys."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.conftest import (
    BASE_IMAGE,
    BIN,
    FAST_LEASES,
    ROOT,
    Process,
    free_port,
    process_env,
    start_worker,
    wait_until,
)
from tests.farm import (
    archive_deployment,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def workers(logs_dir, redis_client, s3, docker_client):
    """Starts Dramatiq workers (one process, two threads each) with fast leases."""
    started: list[Process] = []

    def start(**env: str) -> Process:
        process = start_worker(logs_dir, name="reliability", **{**FAST_LEASES, **env})
        wait_until(lambda: "ready for action" in process.tail(), 30, what="a worker to boot")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def build_containers(docker_client, marker: str) -> list:
    """What is left of one build's RUN step on the engine: containers (running or not, the
    classic builder's) and processes (BuildKit runs a step with runc, not as a container) that
    carry its marker."""
    containers = [c for c in docker_client.containers(all=True) if marker in (c.get("Command") or "")]
    return containers + processes_with(marker)


def processes_with(marker: str) -> list[int]:
    """Live processes whose command line or environment holds the marker. The environment
    too: the step's shell execs its last command, whose command line has lost the comment."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and any(
                marker.encode() in (entry / name).read_bytes() for name in ("cmdline", "environ")
            ):
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile
    return [pid for pid in found if pid != os.getpid() and alive(pid)]


def alive(pid: int) -> bool:
    return _state(pid) != "Z"


def _children(pid: int) -> list[int]:
    """Children of every thread of the process: a build's CLI is forked by a worker thread."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue  # the thread ended meanwhile
    return found


def build_clis(process: Process, deployment: dict) -> list[int]:
    """The `docker build` processes of a deployment's builds started by this Dramatiq master's
    worker processes."""
    tag = f"/{deployment['subdomain']}:".encode()
    found = []
    for child in _children(process.pid):
        for pid in _children(child):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args[0].endswith(b"docker") and args[1:2] == [b"build"] and any(tag in arg for arg in args):
                found.append(pid)
    return found


def engine_side(step: list[int]) -> list[int]:
    """A BuildKit step's processes and the runc processes above them: what the engine runs for it."""
    parents = []
    for pid in step:
        try:
            parent = int(Path(f"/proc/{pid}/status").read_text().split("PPid:")[1].split()[0])
            if Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].endswith(b"runc"):
                parents.append(parent)
        except (OSError, IndexError):
            continue
    return step + parents


def worker_of(process: Process, build: dict) -> bool:
    """Whether the build's recorded worker (host:pid) is a child of this Dramatiq master."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
    return build["worker"].rsplit(":", 1)[1] in children


def slow_build(client, command: str, **fields) -> tuple[dict, dict, str]:
    marker = f"m{uuid.uuid4().hex[:12]}"
    steps = f"FROM {BASE_IMAGE}\nENV TEST_MARKER={marker}\nRUN {command} # {marker}\n"
    deployment = archive_deployment(client, context_archive(steps), **fields)
    return deployment, deploy(client, deployment), marker


def wait_for_line(client, build: dict, line: str, timeout: float = 60) -> None:
    """Until the log has this whole line: the step's header, which holds the command, comes
    before the step runs."""
    path = build_path(build) + "/logs"
    wait_until(lambda: line in client.get(path).text.splitlines(), timeout, what=repr(line))


def test_cancelling_a_running_build_stops_it_within_two_seconds_and_leaves_no_container(
    client, workers, docker_client
):
    workers()
    _, build, marker = slow_build(client, "echo started && sleep 60")
    wait_for_line(client, build, "started")
    assert build_containers(docker_client, marker), "the RUN step should be running"

    # When the build is cancelled while its RUN step runs
    asked = time.monotonic()
    response = client.post(build_path(build) + "/cancel")
    assert response.status_code == 202 and response.json()["status"] == "building"
    cancelled = wait_for_status(client, build, timeout=10)
    elapsed = time.monotonic() - asked

    # Then it ends as cancelled within 2 s, with no container left and who cancelled it logged
    print(f"\ncancel → cancelled in {elapsed:.2f} s")
    assert cancelled["status"] == "cancelled" and elapsed <= 2.0
    assert (
        cancelled["finished_at"] and cancelled["image_tag"] is None and cancelled["error_kind"] == "cancelled"
    )
    wait_until(lambda: not build_containers(docker_client, marker), 2, what="the RUN container to go")
    assert logs(client, build).splitlines()[-2:] == ["ERROR: Build cancelled by tests", "Build cancelled"]
    again = client.post(build_path(build) + "/cancel")
    assert again.status_code == 200 and again.json()["status"] == "cancelled"


def test_cancelling_a_silent_buildkit_step_ends_the_step_and_the_cli_within_two_seconds(client, workers):
    worker = workers()
    # Given a RUN step that prints nothing, running on the engine (no log line to stop at)
    deployment, build, marker = slow_build(client, "sleep 600")
    step = engine_side(wait_until(lambda: processes_with(marker), 60, interval=0.05, what="the RUN step"))
    clis = build_clis(worker, deployment)
    assert len(clis) == 1, "the worker should be running the build's `docker build`"

    # When the build is cancelled
    asked = time.monotonic()
    assert client.post(build_path(build) + "/cancel").status_code == 202
    cancelled = wait_for_status(client, build, timeout=10)
    elapsed = time.monotonic() - asked

    # Then within 2 s it is cancelled, its CLI and its step (and the runc above it) are gone,
    # and no process carries its marker
    print(f"\nsilent step: cancel → cancelled in {elapsed:.2f} s")
    assert cancelled["status"] == "cancelled" and elapsed <= 2.0
    wait_until(
        lambda: not any(alive(pid) for pid in clis + step) and not processes_with(marker),
        max(0.1, asked + 2.0 - time.monotonic()),
        interval=0.05,
        what="the CLI and the RUN step to go",
    )
    assert logs(client, build).splitlines()[-1] == "Build cancelled"


def test_a_build_running_past_its_timeout_fails_as_timed_out_and_is_stopped(client, workers, docker_client):
    workers()
    _, build, marker = slow_build(client, "echo started && sleep 60", build_timeout_s=2)
    failed = wait_for_status(client, build, timeout=30)
    assert failed["status"] == "failed" and failed["error"] == "Build timed out after 2 s"
    assert failed["error_kind"] == "timeout"
    assert "ERROR: Build timed out after 2 s" in logs(client, build)
    wait_until(lambda: not build_containers(docker_client, marker), 5, what="the RUN container to go")


def test_a_worker_killed_mid_build_is_taken_over_by_another_under_a_new_attempt(
    client, workers, docker_client
):
    first, second = workers(), workers()
    deployment, build, marker = slow_build(client, "echo started && sleep 4 && echo finished")
    wait_for_line(client, build, "started")
    running = client.get(build_path(build)).json()
    holder, survivor = (first, second) if worker_of(first, running) else (second, first)
    clis, step = build_clis(holder, deployment), engine_side(processes_with(marker))
    assert len(clis) == 1 and step, "the holder should be running `docker build` and its RUN step"

    # When the worker running the build dies at once (its whole host, say)
    os.killpg(holder.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # Its `docker build` (in a process group of its own, so not hit by the kill) dies with it
    # (PDEATHSIG), and the engine stops the step whose session ended, before any takeover
    wait_until(
        lambda: not any(alive(pid) for pid in clis + step), 2, interval=0.05, what="the orphaned CLI and step"
    )
    taken = wait_until(
        lambda: client.get(build_path(build)).json()["attempt"] == 2, 90, interval=0.05, what="the takeover"
    )
    takeover_s = time.monotonic() - killed_at
    done = wait_for_status(client, build, timeout=60)

    # Then another worker took it over under attempt 2 and finished it
    print(f"\nkill -9 → takeover in {takeover_s:.1f} s (lease 4 s)")
    assert taken and takeover_s <= 90
    assert done["status"] == "success" and done["attempt"] == 2 and done["worker"] != running["worker"]
    assert done["error"] is None and done["error_kind"] is None
    assert worker_of(survivor, done)
    text = logs(client, build)
    assert f"--- attempt 2: taking over from worker {running['worker']}, whose lease expired ---" in text
    assert text.count("Pushing ") == 1 and text.count("Build success") == 1


def test_a_build_whose_workers_keep_dying_fails_as_worker_lost_after_its_last_attempt(client, workers):
    first, second = workers(BUILDFARM_MAX_ATTEMPTS="1"), workers(BUILDFARM_MAX_ATTEMPTS="1")
    _, build, _ = slow_build(client, "echo started && sleep 30")
    wait_for_line(client, build, "started")
    running = client.get(build_path(build)).json()
    os.killpg((first if worker_of(first, running) else second).pid, signal.SIGKILL)
    lost = wait_for_status(client, build, timeout=60)
    assert lost["status"] == "failed" and lost["error"].startswith("Worker lost: 1 attempt(s)")
    assert lost["error_kind"] == "infrastructure"
    assert logs(client, build).splitlines()[-1] == "Build failed"


def test_a_stopping_worker_finishes_a_build_within_its_grace_period(client, workers):
    stopping = workers(BUILDFARM_WORKER_GRACE_S="30")
    _, build, _ = slow_build(client, "echo started && sleep 2 && echo finished")
    wait_for_line(client, build, "started")
    stopping.handle.send_signal(signal.SIGTERM)
    done = wait_for_status(client, build, timeout=60)
    assert done["status"] == "success" and done["attempt"] == 1
    wait_until(lambda: not stopping.alive(), 30, what="the worker to exit")


def test_a_stopping_worker_hands_a_long_build_back_after_its_grace_period(client, workers):
    stopping = workers(BUILDFARM_WORKER_GRACE_S="1")
    _, build, _ = slow_build(client, "echo started && sleep 5 && echo finished")
    wait_for_line(client, build, "started")
    other = workers()
    stopping.handle.send_signal(signal.SIGTERM)
    done = wait_for_status(client, build, timeout=90)
    assert done["status"] == "success" and done["attempt"] == 2 and worker_of(other, done)
    text = logs(client, build)
    assert "--- Worker shutting down: the build is handed back ---" in text
    assert text.count("Build success") == 1
    wait_until(lambda: not stopping.alive(), 30, what="the stopping worker to exit")


def test_queued_builds_survive_a_redis_restart_and_each_runs_once(client, workers, redis_client):
    # Given three builds queued while no worker runs
    builds = [
        deploy(client, archive_deployment(client, context_archive(dockerfile("echo queued"))))
        for _ in range(3)
    ]
    # When Redis restarts (AOF on, as the farm's own config has it)
    state = Path(os.environ.get("BUILDFARM_STATE", ROOT / ".local"))
    redis_pid = int((state / "pids/redis.pid").read_text())
    os.kill(redis_pid, signal.SIGTERM)
    wait_until(
        lambda: not Path(f"/proc/{redis_pid}").exists() or "Z" in _state(redis_pid), 20, what="Redis to stop"
    )
    subprocess.run([str(ROOT / "deploy/local/services"), "up"], check=True, capture_output=True)
    assert redis_client.ping()
    # Then every queued build still runs, once
    workers()
    done = [wait_for_status(client, b, timeout=60) for b in builds]
    assert [(b["status"], b["attempt"]) for b in done] == [("success", 1)] * 3


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]
    except OSError:
        return "Z"


def test_a_log_stream_resumes_without_gaps_after_the_api_restarts(client, workers, tenant_token, logs_dir):
    from websockets.sync.client import connect

    from tests.farm import ws_url

    workers()
    port = free_port()
    args = [
        str(BIN / "gunicorn"),
        "api.asgi:app",
        "--worker-class",
        "api.server.ApiWorker",
        "--workers",
        "1",
        "--bind",
        f"127.0.0.1:{port}",
    ]
    api = Process(args, process_env(), logs_dir / "restarting-api.log")
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _ready(url), 30, what="the API")
    script = "for i in $(seq 1 40); do echo tick-$i; sleep 0.1; done"
    deployment = archive_deployment(client, context_archive(dockerfile(script)))
    build = deploy(client, deployment)
    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    received = []
    try:
        with connect(ws_url(url, build), additional_headers=headers) as ws:
            while not any(line.startswith("tick-10") for line in received):
                received.append(ws.recv(timeout=30))
            # When the API dies under the open stream, and comes back
            api.stop(signal.SIGKILL)
        api = Process(args, process_env(), logs_dir / "restarted-api.log")
        wait_until(lambda: _ready(url), 30, what="the restarted API")
        # Then the client resumes after the lines it has, and misses nothing
        with connect(ws_url(url, build, after=len(received)), additional_headers=headers) as ws:
            try:
                while True:
                    received.append(ws.recv(timeout=60))
            except Exception:
                pass
    finally:
        api.stop()
    assert wait_for_status(client, build)["status"] == "success"
    assert received == logs(client, build).splitlines()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_builds_of_one_deployment_run_one_at_a_time_in_order(client, workers):
    workers()
    deployment = archive_deployment(client, context_archive(dockerfile("sleep 1")))
    first, second = deploy(client, deployment), deploy(client, deployment)
    first, second = wait_for_status(client, first), wait_for_status(client, second)
    assert first["status"] == second["status"] == "success"
    assert second["started_at"] >= first["finished_at"]


def test_a_newer_deploy_supersedes_queued_builds_when_the_deployment_asks_for_it(client, workers):
    workers()
    deployment = archive_deployment(client, context_archive(dockerfile("sleep 2")), supersede_queued=True)
    running = deploy(client, deployment)
    wait_for_status(client, running, statuses=("building",))
    queued, newest = deploy(client, deployment), deploy(client, deployment)
    superseded = client.get(build_path(queued)).json()
    assert (
        superseded["status"] == "cancelled"
        and superseded["error"] == f"Superseded by build #{newest['number']}"
        and superseded["error_kind"] == "cancelled"
    )
    assert wait_for_status(client, running)["status"] == "success"
    assert wait_for_status(client, newest)["status"] == "success"


def test_a_retried_deploy_with_the_same_idempotency_key_returns_the_same_build(client):
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    key = {"Idempotency-Key": f"ci-run-{uuid.uuid4()}"}
    first = client.post(f"/deployments/{deployment['id']}/deploy", headers=key)
    again = client.post(f"/deployments/{deployment['id']}/deploy", headers=key)
    assert first.status_code == again.status_code == 202
    assert again.json()["id"] == first.json()["id"]
    assert len(client.get(f"/deployments/{deployment['id']}/builds").json()) == 1
    other = client.post(f"/deployments/{deployment['id']}/deploy", headers={"Idempotency-Key": "another"})
    assert other.json()["id"] != first.json()["id"]
    bad = client.post(f"/deployments/{deployment['id']}/deploy", headers={"Idempotency-Key": "x" * 201})
    assert bad.status_code == 400
