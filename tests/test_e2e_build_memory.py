"""The memory cap of RUN steps under BuildKit (worker/build_memory.py): the engine's BuildKit
ignores `docker build --memory`, so the worker caps BuildKit's cgroup, which holds every step."""

from __future__ import annotations

import pytest

from common.config import Config
from tests.conftest import start_worker, wait_until
from tests.farm import archive_deployment, context_archive, deploy, dockerfile, logs, wait_for_status
from worker.build_memory import cap_buildkit_memory

# It changes what every build on the shared engine gets: run alone (deploy/local/test).
pytestmark = [pytest.mark.e2e, pytest.mark.engine_wide]

CAP = 96 * 1024 * 1024


@pytest.fixture
def capped_worker(redis_client, s3, docker_client, logs_dir):
    process = start_worker(logs_dir, "capped", BUILDFARM_BUILD_MEMORY_BYTES=str(CAP))
    wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
    yield process
    process.stop()
    # The cap holds the whole engine: give the next tests the farm's default back.
    assert cap_buildkit_memory(Config()) is not None


def test_a_run_step_past_the_memory_cap_is_killed_and_fails_its_build_as_the_users(client, capped_worker):
    # A step that stays under the cap builds; one that allocates 3× the cap is killed by the kernel
    under = archive_deployment(
        client, context_archive(dockerfile("dd if=/dev/zero of=/dev/null bs=32M count=1"))
    )
    assert wait_for_status(client, deploy(client, under))["status"] == "success"
    over = archive_deployment(
        client, context_archive(dockerfile(f"dd if=/dev/zero of=/dev/null bs={3 * CAP // 2**20}M count=1"))
    )
    build = wait_for_status(client, deploy(client, over))
    assert build["status"] == "failed"
    assert build["error"].endswith("exit code: 137") and "Internal error" not in build["error"]
    assert logs(client, build).splitlines()[-2:] == [f"ERROR: {build['error']}", "Build failed"]
