"""The step guard's parts that need no engine (worker/step_guard.py, worker/step_cgroups.py):
limits written only where none is set, and a killed step's build told which limit it passed.
The guard against real steps is tested in tests/test_hostile_resources.py."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from common.config import Config
from worker.build_types import DockerError
from worker.disk_space import tree_bytes
from worker.step_cgroups import StepCgroup
from worker.step_guard import StepGuard, _write_note, steps_stopped_explained

COMMAND = "/bin/sh -c bomb() { bomb | bomb & }; bomb"
REASON = "The build reached its limit of 64 processes in one step (BUILDFARM_BUILD_PIDS)"
BUILDKIT_ERROR = f"executor failed running [{COMMAND}]: exit code: 137"
CLASSIC_ERROR = f"The command '{COMMAND}' returned a non-zero code: 137"
LEAD_IN_ANOTHER_PROCESS = """
import sys
from pathlib import Path
from common.config import Config
from worker.step_guard import StepGuard
print(StepGuard(Config(), locks=Path(sys.argv[1]))._lead())
"""


def fake_step(root, pids_max: str, quota: str) -> StepCgroup:
    for controller, files in {
        "pids": {"pids.max": pids_max},
        "cpu": {"cpu.cfs_quota_us": quota, "cpu.cfs_period_us": "100000"},
    }.items():
        folder = root / controller / "docker/buildkit/step1"
        folder.mkdir(parents=True)
        for name, value in files.items():
            (folder / name).write_text(value + "\n")
    return StepCgroup("docker/buildkit/step1", root)


def test_a_step_without_limits_gets_the_workers(tmp_path):
    fake_step(tmp_path, "max", "-1").limit(pids=64, cpus=0.5)
    assert (tmp_path / "pids/docker/buildkit/step1/pids.max").read_text() == "64"
    assert (tmp_path / "cpu/docker/buildkit/step1/cpu.cfs_quota_us").read_text() == "50000"


def test_a_step_with_stricter_limits_keeps_them_and_one_with_looser_limits_gets_the_workers(tmp_path):
    fake_step(tmp_path, "32", "20000").limit(pids=64, cpus=0.5)
    assert (tmp_path / "pids/docker/buildkit/step1/pids.max").read_text() == "32\n"
    assert (tmp_path / "cpu/docker/buildkit/step1/cpu.cfs_quota_us").read_text() == "20000\n"
    fake_step(tmp_path / "looser", "1024", "200000").limit(pids=64, cpus=0.5)
    assert (tmp_path / "looser/pids/docker/buildkit/step1/pids.max").read_text() == "64"
    assert (tmp_path / "looser/cpu/docker/buildkit/step1/cpu.cfs_quota_us").read_text() == "50000"


def test_a_step_past_a_stricter_workers_limit_is_stopped_naming_the_limit_in_force(tmp_path):
    # Given a step another worker of the host limited to 64 processes, whose fork was refused
    step = fake_step(tmp_path, "64", "-1")
    (tmp_path / "pids/docker/buildkit/step1/pids.events").write_text("max 3\n")
    guard = StepGuard(Config(build_pids=1024), locks=tmp_path / "locks")
    reasons: list[str] = []
    guard._kill = lambda _step, reason: reasons.append(reason)
    # When this worker's guard (limit 1024) sees it first
    guard._check(step, measure_disk=False)
    # Then the build is told the limit it reached, not this guard's setting
    assert reasons == [f"{REASON}: the step was stopped"]
    assert fake_step(tmp_path / "unlimited", "max", "-1").pids_limit() is None


# The last: the step's shell saw its fork refused and exited before the guard killed it.
@pytest.mark.parametrize("error", [BUILDKIT_ERROR, CLASSIC_ERROR, CLASSIC_ERROR.replace("137", "2")])
def test_a_build_whose_step_the_guard_killed_fails_with_the_limit_it_passed(tmp_path, error):
    with pytest.raises(DockerError) as failure, steps_stopped_explained(tmp_path):
        _write_note(tmp_path, COMMAND, REASON)
        raise DockerError(error)
    assert str(failure.value) == REASON


@pytest.mark.parametrize(
    "error",
    [
        "failed to compute cache key: not found",  # not a step that ran
        BUILDKIT_ERROR.replace("}; bomb", "}; other"),  # another step was killed
    ],
)
def test_a_build_failing_otherwise_keeps_the_engines_message(tmp_path, error):
    with pytest.raises(DockerError) as failure, steps_stopped_explained(tmp_path):
        _write_note(tmp_path, COMMAND, REASON)
        raise DockerError(error)
    assert str(failure.value) == error


def test_a_kill_before_the_build_started_is_not_the_builds(tmp_path):
    _write_note(tmp_path, COMMAND, REASON)
    time.sleep(0.01)
    with pytest.raises(DockerError) as failure, steps_stopped_explained(tmp_path):
        raise DockerError(BUILDKIT_ERROR)
    assert str(failure.value) == BUILDKIT_ERROR


def test_a_trees_size_counts_the_blocks_its_files_hold_and_follows_no_link(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/data").write_bytes(b"x" * 1_000_000)
    with (tmp_path / "sparse").open("wb") as sparse:
        sparse.truncate(1_000_000_000)
    (tmp_path / "loop").symlink_to(tmp_path)
    assert 1_000_000 <= tree_bytes(tmp_path) < 1_100_000


def test_one_guard_of_a_host_watches_the_engines_steps_and_the_next_takes_over_when_it_goes(tmp_path):
    def lead_in_another_process() -> str:
        command = [sys.executable, "-c", LEAD_IN_ANOTHER_PROCESS, str(tmp_path)]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    # A guard leads, then its process ends; the next guard takes over; a third waits
    assert lead_in_another_process() == "True"
    assert StepGuard(Config(), locks=tmp_path)._lead()
    assert lead_in_another_process() == "False"
    # A guard with other limits leads the steps it finds too (each gets the strictest)
    assert StepGuard(Config(build_pids=64), locks=tmp_path)._lead()
