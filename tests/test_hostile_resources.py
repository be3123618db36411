"""A tenant's build cannot exhaust what the host shares: processes, CPU, disk (issue 13, item 4).
Each case is a real build on the shared engine by a worker with small limits; the per-step limits
are written by the worker's step guard (worker/step_guard.py) into the steps' cgroups."""

from __future__ import annotations

import glob
import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from common.config import Config
from tests.conftest import FAST_LEASES, start_worker, wait_until
from tests.farm import archive_deployment, build_path, context_archive, deploy, dockerfile, wait_for_status
from worker.disk_space import engine_data_root
from worker.scratch import PREFIX
from worker.step_cgroups import CGROUP_ROOT, StepCgroup, buildkit_steps, make_engine_parent

# It changes what every build on the shared engine gets: run alone (deploy/local/test).
pytestmark = [pytest.mark.e2e, pytest.mark.engine_wide]

PIDS = 64
DISK_BUDGET = 32 * 1024 * 1024
# Low enough that a busy step reaches it on a loaded host (the engine is shared).
CPUS = 0.1
# Long enough that a step still running at the end of a test was stopped by nothing but its own
# end: a test that waited for it would time out.
FOREVER_S = 600


def limited_worker(logs_dir, **env: str):
    process = start_worker(logs_dir, "limited", **env)
    wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
    return process


@pytest.fixture(params=["buildkit", "classic"])
def builder(request) -> str:
    return request.param


@pytest.fixture
def capped_worker(redis_client, s3, docker_client, logs_dir, builder):
    """A worker with small per-step limits, alone on the queue."""
    process = limited_worker(
        logs_dir,
        BUILDFARM_BUILDER=builder,
        BUILDFARM_BUILD_PIDS=str(PIDS),
        BUILDFARM_BUILD_DISK_BYTES=str(DISK_BUDGET),
    )
    yield process
    process.stop()


def build_of(client, *run_steps: str, files: dict[str, bytes] | None = None) -> dict:
    return deploy(client, archive_deployment(client, context_archive(dockerfile(*run_steps), files)))


def running_step(marker: str) -> StepCgroup:
    """The RUN step whose command holds `marker`, once it runs: a BuildKit step, or a classic
    builder's step container."""

    data_root = engine_data_root(Config.from_env().docker_host)

    def find() -> StepCgroup | None:
        found = glob.glob(str(CGROUP_ROOT / "pids/docker/*[0-9a-f]"))
        containers = [StepCgroup(f"docker/{Path(p).name}") for p in found]
        for step in [*buildkit_steps(), *containers]:
            try:
                if marker in (step.command(data_root) or ""):
                    return step
            except OSError:
                continue
        return None

    return wait_until(find, 60, 0.05, what=f"a RUN step with {marker}")


def test_a_worker_on_a_host_where_no_container_ran_yet_makes_the_engines_cgroup_parent(
    tmp_path, config, docker_client
):
    # Given a host just started: cgroup hierarchies without the engine's parent, which the engine
    # makes with its first container (before it, the worker's caps had nowhere to go, and a fork
    # bomb ran unlimited: seen on this machine after a restart)
    for hierarchy in ("pids", "memory", "cpu"):
        (tmp_path / hierarchy).mkdir()
    docker_host = config.docker_host
    assert docker_client.info()["CgroupDriver"] == "cgroupfs"
    # When a worker of this host's engine boots, it makes the parent where it caps BuildKit's steps
    assert make_engine_parent(docker_host, tmp_path) == [tmp_path / "pids/docker", tmp_path / "memory/docker"]
    assert not (tmp_path / "cpu/docker").exists()
    # And only once; and never for an engine on another host, whose cgroups are not this host's
    assert make_engine_parent(docker_host, tmp_path) == []
    (tmp_path / "pids/docker").rmdir()
    assert make_engine_parent("tcp://127.0.0.1:2375", tmp_path) == []
    assert not (tmp_path / "pids/docker").exists()


def test_a_fork_bomb_fails_its_build_promptly_as_the_users_and_the_farm_builds_on(
    client, capped_worker, builder, docker_client
):
    # Given a worker whose RUN steps may have 64 processes
    # When a step forks without end, and its first process waits rather than exit (it forks
    # nothing more: a shell whose own fork is refused would end the step by itself)
    started = time.monotonic()
    bomb = build_of(client, f"bomb() {{ bomb | bomb & }}; (bomb); exec sleep {FOREVER_S}")
    failed = wait_for_status(client, bomb, timeout=60)
    stopped_s = time.monotonic() - started
    # Then the build fails within seconds, saying which limit the user's step reached
    assert failed["status"] == "failed"
    assert failed["error"] == (
        f"The build reached its limit of {PIDS} processes in one step (BUILDFARM_BUILD_PIDS): "
        "the step was stopped"
    )
    assert stopped_s < 20
    print(f"\n{builder}: fork bomb deployed, built and stopped in {stopped_s:.1f} s")
    # And the engine and the farm go on: the next build succeeds
    assert docker_client.version()["ApiVersion"]
    after = build_of(client, "echo still building")
    assert wait_for_status(client, after)["status"] == "success"


def test_a_build_writing_past_its_disk_budget_fails_with_the_budget_and_its_last_layer_is_reclaimed(
    client, capped_worker, builder
):
    # Given a worker whose builds may have 32 MiB of layers
    # When a step writes 20 MiB, then the next one zeros until it is stopped (1 MiB at a time:
    # never more than ~2 s of it); neither alone goes past the budget
    marker = uuid.uuid4().hex
    filler = build_of(
        client,
        "head -c 20971520 /dev/zero > /app/first",
        f"echo {marker}; while true; do head -c 1048576 /dev/zero >> /app/zeros; sleep 0.02; done",
    )
    step = running_step(marker)
    upper = wait_until(lambda: (layers := step.layers()) and layers[0], 10, what="the step's upper layer")
    failed = wait_for_status(client, filler, timeout=60)
    # Then the build fails with its budget in the message
    assert failed["status"] == "failed"
    assert failed["error"] == (
        "The build's layers (its base image's included) took more than 32 MiB, its disk budget "
        "(BUILDFARM_BUILD_DISK_BYTES): the step was stopped"
    )
    # And the engine removes what the step wrote
    wait_until(lambda: not upper.exists(), 30, what=f"the engine to remove {upper}")


def test_a_busy_step_uses_no_more_cpu_than_its_cap(request, client, s3, docker_client, logs_dir):
    # Given a worker whose RUN steps may use a tenth of a CPU
    worker = limited_worker(logs_dir, BUILDFARM_BUILD_CPUS=str(CPUS))
    request.addfinalizer(worker.stop)
    # When a step keeps two CPUs busy for a few seconds
    marker = uuid.uuid4().hex
    busy = "timeout 6 sh -c 'while :; do :; done'"
    build = build_of(client, f"echo {marker}; {busy} & {busy}; wait; true")
    step = running_step(marker)
    usage = CGROUP_ROOT / "cpuacct" / step.path / "cpuacct.usage"
    time.sleep(1)  # past the moment the guard writes the quota
    before, began = int(usage.read_text()), time.monotonic()
    time.sleep(4)
    cpus = (int(usage.read_text()) - before) / 1e9 / (time.monotonic() - began)
    print(f"\nbusy step capped at {CPUS} CPU used {cpus:.2f} CPU")
    # Then it gets at most its cap, and the kernel holds it there (a CFS quota: a cap, not a weight)
    cpu = CGROUP_ROOT / "cpu" / step.path
    assert (cpu / "cpu.cfs_quota_us").read_text().strip() == str(int(CPUS * 100_000))
    throttled = dict(line.split() for line in (cpu / "cpu.stat").read_text().splitlines())
    assert cpus <= CPUS * 1.1 and int(throttled["nr_throttled"]) > 0
    assert wait_for_status(client, build)["status"] == "success"


@pytest.mark.parametrize("builder", ["classic"], indirect=True)
def test_a_source_past_the_disk_budget_of_the_workers_scratch_space_fails_its_build(client, capped_worker):
    # Given a worker with 32 MiB of disk per build, and a source that extracts to 48 MiB
    zeros = bytes(48 * 1024 * 1024)
    build = build_of(client, f"sleep {FOREVER_S}", files={"zeros": zeros})
    # Then the build fails as soon as the worker measures its scratch folder
    failed = wait_for_status(client, build, timeout=60)
    assert failed["status"] == "failed"
    assert failed["error"] == (
        "The build's source took more than 32 MiB of the worker's disk, its budget "
        "(BUILDFARM_BUILD_DISK_BYTES)"
    )


def test_a_worker_short_of_free_disk_takes_no_build_and_another_worker_takes_it_on_its_first_attempt(
    client, redis_client, s3, docker_client, logs_dir
):
    # Given a worker that needs a petabyte free to take a build
    short = limited_worker(logs_dir, BUILDFARM_MIN_FREE_DISK_BYTES=str(2**50))
    try:
        build = build_of(client, "echo built")
        # Then the build waits in the queue, unclaimed
        wait_until(lambda: "left in the queue" in short.tail(), 30, what="the worker to refuse the build")
        time.sleep(2)
        current = client.get(build_path(build)).json()
        assert current["status"] == "pending" and current["attempt"] == 0, current
    finally:
        # Its master alone: it stops its process gently, which gives back the message it holds.
        os.kill(short.pid, signal.SIGTERM)
        short.handle.wait(30)
    # And a worker with the default threshold takes it, first attempt
    roomy = limited_worker(logs_dir)
    try:
        done = wait_for_status(client, build, timeout=60)
        assert done["status"] == "success" and done["attempt"] == 1
    finally:
        roomy.stop()


def test_the_scratch_folder_of_a_worker_killed_mid_build_is_removed_when_a_worker_starts(
    client, redis_client, s3, docker_client, logs_dir
):
    # Given a classic worker extracting a build's source into its scratch folder
    first = limited_worker(logs_dir, BUILDFARM_BUILDER="classic", **FAST_LEASES)
    build = build_of(client, f"sleep {FOREVER_S}")
    wait_for_status(client, build, statuses=("building",))
    pattern = f"/tmp/{PREFIX}*-{build['id'][:8]}-*"
    folders = wait_until(lambda: glob.glob(pattern), 30, what="the build's scratch folder")
    # When the worker is killed with -9 mid-build
    os.killpg(first.pid, signal.SIGKILL)
    first.handle.wait(10)
    assert glob.glob(pattern) == folders
    # Then the next worker to start on the host removes the folder
    second = limited_worker(logs_dir, BUILDFARM_BUILDER="classic", **FAST_LEASES)
    try:
        wait_until(lambda: not any(Path(f).exists() for f in folders), 10, what="the folder to go")
        assert client.post(build_path(build) + "/cancel").status_code in (200, 202)
        assert wait_for_status(client, build)["status"] == "cancelled"
    finally:
        second.stop()
