"""Fair share between tenants on the real farm (issue 15): free build slots go to the tenants in
turn, a tenant at its running limit waits while others start, a tenant at its queue limit gets
429 (deploy and webhook), limits changed by an admin take effect at once, and a Redis restart
and a worker killed with kill -9 under a fair queue lose nothing and run nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from cli.main import main as buildfarm
from common.models import BuildStatus
from common.records import keys
from common.tokens import create_token
from tests import test_e2e_reliability, test_e2e_webhooks
from tests.conftest import ROOT, api_client, wait_until
from tests.farm import (
    archive_deployment,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
)
from tests.test_e2e_reliability import wait_for_line, worker_of
from tests.test_e2e_webhooks import github, push_payload

pytestmark = pytest.mark.e2e
# Dramatiq workers with fast leases, stopped after the test: the reliability tests' fixture; git
# deployments whose pending builds are cancelled after the test: the webhook tests'.
workers = test_e2e_reliability.workers
git_deployment = test_e2e_webhooks.git_deployment


@pytest.fixture
def tenants(request, redis_client):
    """Makes fresh tenants, each with its API client; afterwards cancels their builds still
    pending, so that no later test's worker runs them."""
    made: list[tuple[str, httpx.Client]] = []

    def make() -> tuple[str, httpx.Client]:
        tenant = f"t-{uuid.uuid4().hex[:12]}"
        token = create_token(redis_client, tenant, "tests")
        made.append((tenant, api_client(request, "/api/v1", {"Authorization": f"Bearer {token}"})))
        return made[-1]

    yield make
    for _, client in made:
        for deployment in client.get("/deployments").json():
            for build in client.get(
                f"/deployments/{deployment['id']}/builds", params={"status": "pending"}
            ).json():
                client.post(build_path(build) + "/cancel")
        client.close()


def moment(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def queue(client: httpx.Client, count: int, *run_steps: str) -> list[dict]:
    """`count` builds, each of a new deployment (so that none waits behind another of its
    deployment), oldest first; each of its own context, so that none takes its steps from the cache."""
    return [
        deploy(client, archive_deployment(client, context_archive(dockerfile(*run_steps))))
        for _ in range(count)
    ]


def record(client: httpx.Client, build: dict) -> dict:
    return client.get(build_path(build)).json()


def set_limits(tenant: str, *flags: str) -> None:
    assert buildfarm(["tenant", "set", tenant, *flags]) == 0


def test_a_tenant_queued_behind_another_tenants_backlog_gets_the_next_free_slot(tenants, workers):
    (_, a), (_, b) = tenants(), tenants()
    # Given tenant A's backlog of six builds on a farm with one build slot, the first running
    workers(threads="1")
    backlog = queue(a, 6, "echo a && sleep 1")
    wait_for_status(a, backlog[0], statuses=("building", "success"), timeout=60)
    # When tenant B queues one build
    mine = queue(b, 1, "echo b")[0]
    # Then B's build is the next to start (FIFO would start it after all of A's): at most one
    # of A's builds started after B's was queued (the slot may have been taken just before)
    done = wait_for_status(b, mine, timeout=120)
    assert done["status"] == "success"
    a_done = [wait_for_status(a, build, timeout=120) for build in backlog]
    assert all(build["status"] == "success" for build in a_done)
    queued_at, started_at = moment(done["created_at"]), moment(done["started_at"])
    started_between = [x for x in a_done if queued_at < moment(x["started_at"]) < started_at]
    ahead_of_b = [x for x in a_done if moment(x["started_at"]) > started_at]
    print(f"\nB waited {started_at - queued_at:.1f} s; A's builds started meanwhile: {len(started_between)}")
    assert len(started_between) <= 1
    assert len(ahead_of_b) >= 3, "B should start before most of A's backlog"


def test_a_tenant_at_its_running_limit_waits_while_another_starts_and_a_new_limit_applies_at_once(
    tenants, workers
):
    (a_name, a), (_, b) = tenants(), tenants()
    # Given tenant A limited to one running build, with three queued, on a farm of two slots
    set_limits(a_name, "--max-running", "1")
    backlog = queue(a, 3, "echo a && sleep 3")
    workers()
    wait_for_status(a, backlog[0], statuses=("building",), timeout=60)
    # When tenant B queues a build
    mine = queue(b, 1, "echo b")[0]
    # Then B's build runs on the free slot while A's next builds wait for A's running one
    done = wait_for_status(b, mine, timeout=60)
    assert done["status"] == "success"
    assert [record(a, build)["status"] for build in backlog[1:]].count("pending") >= 1
    # And A never had two builds running at once
    wait_for_status(a, backlog[1], statuses=("building", "success"), timeout=60)
    first, second = record(a, backlog[0]), record(a, backlog[1])
    assert moment(second["started_at"]) >= moment(first["finished_at"])
    # When an admin raises A's limit while A has a build running and one queued
    assert record(a, backlog[2])["status"] == "pending"
    set_limits(a_name, "--max-running", "2")
    # Then A's queued build starts beside the running one, with no restart
    wait_for_status(a, backlog[2], statuses=("building", "success"), timeout=30)
    last, before = record(a, backlog[2]), record(a, backlog[1])
    assert before["finished_at"] is None or moment(last["started_at"]) < moment(before["finished_at"])
    assert [wait_for_status(a, build)["status"] for build in backlog] == ["success"] * 3


def assert_queue_full(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) > 0
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == "too_many_requests"
    assert "max_queued" in body["message"]


def test_a_tenant_at_its_queue_limit_gets_429_with_retry_after_for_a_deploy_and_a_webhook(
    client, tenant_token, git_deployment, api_url
):
    tenant = tenant_token[0]
    # Given a tenant allowed two queued builds, with two queued (no worker runs them)
    set_limits(tenant, "--max-queued", "2")
    archive = archive_deployment(client, context_archive(dockerfile("echo q")))
    queued = [deploy(client, archive) for _ in range(2)]
    # When it deploys once more, or a push webhook comes
    refused = client.post(f"/deployments/{archive['id']}/deploy")
    git = git_deployment()
    delivery = str(uuid.uuid4())
    hooked = github(api_url, git, push_payload(), delivery=delivery)
    # Then both get 429 with Retry-After and the standard body, and nothing more is queued
    assert_queue_full(refused)
    assert_queue_full(hooked)
    assert len(client.get(f"/deployments/{archive['id']}/builds").json()) == 2
    assert client.get(f"/deployments/{git['id']}/builds").json() == []
    # And each queued build tells its place in the tenant's queue
    assert [record(client, build)["queue_position"] for build in queued] == [1, 2]
    # When one queued build is cancelled, the next moves up, and the same delivery (GitHub
    # redelivers) is taken
    assert client.post(build_path(queued[0]) + "/cancel").status_code == 200
    assert record(client, queued[0])["queue_position"] is None
    assert record(client, queued[1])["queue_position"] == 1
    assert github(api_url, git, push_payload(), delivery=delivery).status_code == 202
    # And when an admin raises the limit, the next deploy is taken at once
    assert client.post(f"/deployments/{archive['id']}/deploy").status_code == 429
    set_limits(tenant, "--max-queued", "3")
    assert client.post(f"/deployments/{archive['id']}/deploy").status_code == 202
    for build in client.get(f"/deployments/{archive['id']}/builds", params={"status": "pending"}).json():
        client.post(build_path(build) + "/cancel")


def gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0] == "Z"
    except OSError:
        return True


def restart_redis() -> None:
    """Stops the test farm's Redis (SIGTERM: AOF on, as the farm's own config has it) and starts it again."""
    state = Path(os.environ.get("BUILDFARM_STATE", ROOT / ".local"))
    pid = int((state / "pids/redis.pid").read_text())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: gone(pid), 20, what="Redis to stop")
    subprocess.run([str(ROOT / "deploy/local/services"), "up"], check=True, capture_output=True)


def test_a_fair_queue_survives_a_redis_restart_and_a_worker_killed_mid_build_each_build_once(
    tenants, workers, redis_client
):
    (_, a), (_, b) = tenants(), tenants()
    # Given two tenants' builds queued while no worker runs
    queued = [(a, build) for build in queue(a, 3, "echo started && sleep 3")]
    queued += [(b, build) for build in queue(b, 2, "echo started && sleep 3")]
    # When Redis restarts
    restart_redis()
    assert redis_client.ping()
    # And a worker running one of them is killed with kill -9
    first, second = workers(), workers()
    running = wait_until(
        lambda: next((x for x in queued if record(*x)["status"] == "building"), None), 60, what="a build"
    )
    wait_for_line(*running, "started")
    holder = record(*running)
    os.killpg((first if worker_of(first, holder) else second).pid, signal.SIGKILL)
    killed_at = time.monotonic()
    # Then every build still runs to success, once: one push and one end each, the killed
    # worker's taken over under attempt 2
    done = [wait_for_status(client, build, timeout=180) for client, build in queued]
    print(f"\nall {len(done)} builds done {time.monotonic() - killed_at:.1f} s after the kill")
    assert [build["status"] for build in done] == ["success"] * len(done)
    for (client, build), finished in zip(queued, done, strict=True):
        text = logs(client, build)
        assert text.count("Pushing ") == 1 and text.count("Build success") == 1, text
        # a build the killed worker held (it runs two) is taken over, no other runs twice
        taken_over = "--- attempt 2: taking over from worker" in text
        assert finished["attempt"] == (2 if taken_over else 1)
        assert taken_over or build["id"] != running[1]["id"]


def test_a_build_queued_by_a_farm_before_the_fair_queue_still_runs(tenants, workers, redis_client):
    tenant, client = tenants()
    # Given a pending build with its queue message, in no tenant's queue, as a farm before the
    # fair queue left it (a build queued while no worker runs, taken out of its tenant's queue)
    [build] = queue(client, 1, "echo from-before")
    redis_client.zrem(keys.tenant_builds(tenant, BuildStatus.PENDING), build["id"])
    redis_client.zrem(keys.TENANT_RING, tenant)
    # When a worker takes its message
    workers()
    # Then it runs, once
    done = wait_for_status(client, build, timeout=120)
    assert done["status"] == "success" and done["attempt"] == 1
    assert logs(client, build).count("from-before") >= 1
