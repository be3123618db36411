"""Faults of the farm's own infrastructure during a build, on the real farm: the test kills and
starts again the services of its own state folder (deploy/local/services), and the build retries
within its bound instead of failing."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import alone_on_the_queue
from tests.farm import (
    archived_log,
    build_in_its_run_step,
    logs,
    registry_get,
    service_killed,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

OUTAGE_S = 10
_PUSH_RETRY = re.compile(r"The registry did not answer \(.+\): pushing again in ([\d.]+) s")


def test_a_registry_down_during_a_run_step_is_waited_for_and_the_built_image_is_pushed_once(
    client, worker, config, s3, redis_client
):
    build = build_in_its_run_step(client, "sleep 4", "echo built before the outage")
    # When the registry goes away during the RUN step and comes back 10 s later
    stopped = time.monotonic()
    with service_killed("registry"):
        time.sleep(OUTAGE_S)
    build = wait_for_status(client, build)
    healed_s = time.monotonic() - stopped
    # Then the build succeeds on its first attempt, built once and pushed once the registry is back
    assert build["status"] == "success", build.get("error")
    assert build["attempt"] == 1
    repository, _, tag = build["image_tag"].split("/", 1)[1].rpartition(":")
    assert tag in registry_get(config, f"{repository}/tags/list").json()["tags"]
    text = logs(client, build)
    lines = text.splitlines()
    assert text.count("echo built before the outage") == 1
    # ...and its log says each retry once, in order, between the build and its end
    retries = [i for i, line in enumerate(lines) if _PUSH_RETRY.search(line)]
    assert retries, text
    waits = [float(_PUSH_RETRY.search(lines[i])[1]) for i in retries]
    assert waits == sorted(set(waits))
    built = next(i for i, line in enumerate(lines) if "echo built before the outage" in line)
    assert built < retries[0] < retries[-1] < lines.index("Build success")
    assert sum(line.startswith("Pushing ") for line in lines) == len(retries) + 1
    # ...as the archive does
    assert archived_log(redis_client, s3, config, build, 30) == text
    print(f"\nregistry down {OUTAGE_S} s: healed {healed_s:.1f} s after the stop, {len(retries)} retries")


def test_a_registry_down_longer_than_the_bound_fails_the_build_with_the_outcome_in_words(
    client, worker, logs_dir, config, s3, redis_client
):
    with alone_on_the_queue(worker, logs_dir, "short-push-bound", BUILDFARM_PUSH_RETRY_S="3"):
        build = build_in_its_run_step(client, "sleep 2")
        # When the registry goes away during the RUN step and stays away past the bound (3 s)
        with service_killed("registry"):
            build = wait_for_status(client, build)
    # Then the build fails, saying which part did not answer and what became of the image
    assert build["status"] == "failed"
    assert build["error"] == "The registry did not answer for 3 s; the image was built but not pushed"
    assert build["attempt"] == 1
    text = logs(client, build)
    assert len(_PUSH_RETRY.findall(text)) >= 2
    assert text.endswith(f"ERROR: {build['error']}\nBuild failed\n")
    assert archived_log(redis_client, s3, config, build, 30) == text
