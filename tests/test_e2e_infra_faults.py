"""Faults of the farm's own infrastructure during a build, on the real farm: the test kills and
starts again the services of its own state folder (deploy/local/services), and the build retries
within its bound instead of failing; past the bound the build is handed back (attempt + 1) to a
worker that may reach the part, and fails only once its attempts are spent."""

from __future__ import annotations

import re
import time

import pytest

from tests.conftest import alone_on_the_queue, free_port, start_worker, wait_until
from tests.farm import (
    archive_deployment,
    archived_log,
    build_in_its_run_step,
    context_archive,
    deploy,
    dockerfile,
    failed_as_the_farms,
    logs,
    registry_get,
    service_killed,
    wait_for_status,
)

pytestmark = pytest.mark.e2e

OUTAGE_S = 10
_PUSH_RETRY = re.compile(r"The registry did not answer \(.+\): pushing again in ([\d.]+) s")
_SOURCE_RETRY = re.compile(r"S3 did not answer \(.+\): fetching the source again in ([\d.]+) s")
# A worker whose bound is short, allowed two attempts per build: the first is handed back.
TWO_ATTEMPTS = {"BUILDFARM_MAX_ATTEMPTS": "2"}


def retry_lines(lines: list[str], retry: re.Pattern) -> list[int]:
    """Where the log says a step is tried again: at least once, each retry once and in order
    (each waits longer than the one before)."""
    found = [i for i, line in enumerate(lines) if retry.search(line)]
    assert found, "\n".join(lines)
    waits = [float(retry.search(lines[i])[1]) for i in found]
    assert waits == sorted(set(waits))
    return found


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
    retries = retry_lines(lines, _PUSH_RETRY)
    built = next(i for i, line in enumerate(lines) if "echo built before the outage" in line)
    assert built < retries[0] <= retries[-1] < lines.index("Build success")
    assert sum(line.startswith("Pushing ") for line in lines) == len(retries) + 1
    # ...as the archive does
    assert archived_log(redis_client, s3, config, build, 30) == text
    print(f"\nregistry down {OUTAGE_S} s: healed {healed_s:.1f} s after the stop, {len(retries)} retries")


def test_a_registry_down_longer_than_the_bound_fails_the_build_with_the_outcome_in_words(
    client, worker, logs_dir, config, s3, redis_client
):
    with alone_on_the_queue(worker, logs_dir, "short-push-bound", BUILDFARM_PUSH_RETRY_S="3", **TWO_ATTEMPTS):
        build = build_in_its_run_step(client, "sleep 2")
        # When the registry goes away during the RUN step and stays away past the bound (3 s), for
        # both attempts of the build
        with service_killed("registry"):
            build = wait_for_status(client, build)
    # Then the first attempt is handed back, and the last fails, saying which part did not answer
    # and what became of the image
    text = failed_in_words(
        client, build, "The registry did not answer for 3 s; the image was built but not pushed"
    )
    assert len(_PUSH_RETRY.findall(text)) >= 4
    assert archived_log(redis_client, s3, config, build, 30) == text


@pytest.mark.parametrize("builder", ["buildkit", "classic"])
def test_s3_down_when_a_build_fetches_its_source_is_waited_for_and_the_build_succeeds(
    builder, request, client, worker, config, s3, redis_client
):
    if builder == "classic":
        request.getfixturevalue("classic_worker")
    # Given a build queued behind a running build of its deployment (they run one at a time)
    running = build_in_its_run_step(client, "sleep 3")
    queued = deploy(client, {"id": running["deployment_id"]})
    # When S3 goes away before the queued build fetches its source, and comes back 10 s after the
    # build started (the worker's tries fail at once meanwhile: common/s3.py RETRIED_BY_CALLER)
    with service_killed("s3"):
        wait_for_status(client, queued, statuses=("building",))
        stopped = time.monotonic()
        time.sleep(OUTAGE_S)
    queued = wait_for_status(client, queued)
    healed_s = time.monotonic() - stopped
    # Then the build succeeds on its first attempt, its source sent to the engine again from the start
    assert queued["status"] == "success", queued.get("error")
    assert queued["attempt"] == 1
    text = logs(client, queued)
    lines = text.splitlines()
    retries = retry_lines(lines, _SOURCE_RETRY)
    assert retries[-1] < lines.index("Build success")
    if builder == "classic":  # downloads the archive whole, then says so
        fetched = next(i for i, line in enumerate(lines) if line.startswith("Fetched source archive"))
        assert retries[-1] < fetched
    else:  # says so, then streams the archive to the engine
        assert lines.index(f"Streaming source archive {queued['commit_sha'][:12]} to the engine") < retries[0]
    assert archived_log(redis_client, s3, config, queued, 30) == text
    print(f"\n{builder}: S3 down {OUTAGE_S} s in the build: over at {healed_s:.1f} s, {len(retries)} retries")


def test_s3_down_longer_than_the_bound_fails_the_build_saying_its_source_could_not_be_fetched(
    client, worker, logs_dir, config, s3, redis_client
):
    with alone_on_the_queue(
        worker, logs_dir, "short-source-bound", BUILDFARM_SOURCE_RETRY_S="3", **TWO_ATTEMPTS
    ):
        running = build_in_its_run_step(client, "sleep 2")
        queued = deploy(client, {"id": running["deployment_id"]})
        # When S3 goes away before the queued build fetches its source and stays away past the bound
        with service_killed("s3"):
            queued = wait_for_status(client, queued)
        archived = archived_log(redis_client, s3, config, queued, 30)
    # Then the first attempt is handed back, and the last fails, saying which part did not answer
    # and what it could not do
    text = failed_in_words(
        client, queued, "S3 did not answer for 3 s; the build's source could not be fetched"
    )
    assert _SOURCE_RETRY.search(text)
    assert archived == text


def failed_in_words(client, build: dict, fault: str) -> str:
    """Asserts the build's first attempt was handed back for `fault` and its second, the last,
    failed for it, said last in its log; the log."""
    text = failed_as_the_farms(client, build, f"{fault}; no attempt is left (2 of 2 used)", 2)
    handed = f"--- {fault}: the build is handed back, to run again (attempt 2 of 2) ---"
    assert text.count(handed) == 1
    assert text.index(handed) < text.index("--- attempt 2: taking over from worker ")
    return text


def test_a_worker_that_does_not_reach_the_registry_hands_the_build_to_one_that_does(
    client, worker, logs_dir, config, s3, redis_client
):
    # Given a worker whose registry is a port nobody listens on, alone on the queue, running a build
    unreachable = {"BUILDFARM_REGISTRY": f"localhost:{free_port()}", "BUILDFARM_PUSH_RETRY_S": "10"}
    with alone_on_the_queue(worker, logs_dir, "registry-unreachable", **unreachable):
        build = build_in_its_run_step(client, "echo built on the first worker")
        started = time.monotonic()
        # When a worker that reaches the registry joins while the first one retries its push
        reaching = start_worker(logs_dir, name="registry-reachable")
        try:
            wait_until(lambda: "ready for action" in reaching.tail(), 30, what="the second worker to boot")
            build = wait_for_status(client, build)
            healed_s = time.monotonic() - started
            # (archived by the second worker: stopped at once, it would leave its archive's lock)
            archived = archived_log(redis_client, s3, config, build, 30)
        finally:
            reaching.stop()
    # Then, past the first worker's bound, the second builds it under attempt 2 and pushes it to
    # the farm's registry
    assert build["status"] == "success", build.get("error")
    assert build["attempt"] == 2
    repository, _, tag = build["image_tag"].removeprefix(f"{config.registry}/").rpartition(":")
    assert tag in registry_get(config, f"{repository}/tags/list").json()["tags"]
    # ...its log says the first attempt's retries, then the hand back, then the second attempt
    text = logs(client, build)
    lines = text.splitlines()
    retries = [i for i, line in enumerate(lines) if _PUSH_RETRY.search(line)]
    assert len(retries) >= 3, text
    handed = lines.index(
        "--- The registry did not answer for 10 s; the image was built but not pushed: "
        "the build is handed back, to run again (attempt 2 of 3) ---"
    )
    taken = next(
        i for i, line in enumerate(lines) if line.startswith("--- attempt 2: taking over from worker ")
    )
    assert retries[-1] < handed < taken < lines.index("Build success")
    assert text.count("the build is handed back") == 1
    # ...by another worker than the first
    first_worker = lines[taken].removeprefix("--- attempt 2: taking over from worker ").split(",")[0]
    assert build["worker"] != first_worker
    assert archived == text
    print(f"\nregistry unreachable from one worker: success {healed_s:.1f} s after its RUN step, attempt 2")


def test_a_failing_run_step_is_the_users_mistake_and_is_not_retried(client, worker):
    build = deploy(client, archive_deployment(client, context_archive(dockerfile("exit 3"))))
    build = wait_for_status(client, build)
    assert build["status"] == "failed"
    assert build["attempt"] == 1
    assert "exit code: 3" in build["error"]
    assert "did not answer" not in logs(client, build)


def test_a_worker_that_lost_the_registry_claims_no_new_build_and_the_others_build_them_at_once(
    client, worker, logs_dir, config, s3, redis_client
):
    # Given a worker whose registry is a port nobody listens on, which handed a build back past its
    # bound (20 s) to a worker that reaches the registry
    bound_s = 20
    unreachable = {"BUILDFARM_REGISTRY": f"localhost:{free_port()}", "BUILDFARM_PUSH_RETRY_S": str(bound_s)}
    with alone_on_the_queue(worker, logs_dir, "registry-lost", **unreachable) as sick:
        first = build_in_its_run_step(client, "echo built on the first worker")
        reaching = start_worker(logs_dir, name="registry-reaching")
        try:
            wait_until(lambda: "ready for action" in reaching.tail(), 30, what="the second worker to boot")
            first = wait_for_status(client, first)
            assert first["status"] == "success" and first["attempt"] == 2, first.get("error")
            # When more builds are queued while the first worker is still up
            queued = time.monotonic()
            builds = [
                deploy(client, archive_deployment(client, context_archive(dockerfile(f"echo build {n}"))))
                for n in range(4)
            ]
            builds = [wait_for_status(client, build) for build in builds]
            took_s = time.monotonic() - queued
        finally:
            reaching.stop()
        sick_log = sick.log.read_text(errors="replace")
    # Then the worker that reaches the registry builds them all on their first attempt, none waiting
    # out the first worker's bound
    assert [(build["status"], build["attempt"]) for build in builds] == [("success", 1)] * 4, builds
    assert all(build["worker"] == first["worker"] for build in builds)
    assert took_s < bound_s
    # ...and the first worker's log says why it idles
    assert (
        f"The registry did not answer this worker for {bound_s} s: it claims no build, leaving them "
        "to the other workers, until it answers again (asked every 5 s)"
    ) in sick_log
    assert "claimed (attempt 1)" not in sick_log.partition("it claims no build")[2]
    print(f"\nregistry lost by one worker: 4 builds then built by the other in {took_s:.1f} s")
