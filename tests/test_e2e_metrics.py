"""Metrics and structured logs, through real processes: the gunicorn API (two worker processes)
and Dramatiq workers scraped over HTTP while real builds run. Nothing here is mocked."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from dramatiq.brokers.redis import MAINTENANCE_SCALE, RedisBroker
from dramatiq.common import dq_name

from common.config import Config
from common.records import keys
from common.redis_clients import sync_redis
from common.s3 import archive_key
from tests.conftest import FAST_LEASES, unique_subdomain, wait_until
from tests.farm import (
    MetricsWorker,
    archive_deployment,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    scrape,
    value,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


@pytest.fixture
def metrics_workers(logs_dir, redis_client, s3, docker_client):
    started: list[MetricsWorker] = []

    def start(**env: str) -> MetricsWorker:
        worker = MetricsWorker(logs_dir, **env)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def wait_for_an_idle_farm(api_url: str) -> None:
    """Builds queued by earlier tests are run before a test counts its own: no message waiting
    or delayed, no build running. (Pending builds are not waited for: tests that write records
    straight into Redis leave pending builds with no message, which no worker will ever run.)"""

    broker = maintenance_broker()

    def idle() -> bool:
        give_back_the_messages_of_killed_workers(broker)
        samples = scrape(f"{api_url}/metrics")
        return (
            value(samples, "buildfarm_queue_depth", queue="builds") == 0
            and value(samples, "buildfarm_queue_delayed", queue="builds") == 0
            and value(samples, "buildfarm_builds_active", status="building") == 0
        )

    wait_until(idle, 180, interval=0.5, what="the farm to be idle")


def maintenance_broker() -> RedisBroker:
    """A broker whose every command runs Dramatiq's maintenance, for which a worker silent for
    15 s is dead: a live one beats at every poll of the queue, and every 10 s while its slots
    are all busy (worker/pipeline.py HEARTBEAT_INTERVAL_S)."""
    return RedisBroker(
        client=sync_redis(Config.from_env().queue_redis_url),
        heartbeat_timeout=15_000,
        maintenance_chance=MAINTENANCE_SCALE,
    )


def give_back_the_messages_of_killed_workers(broker: RedisBroker) -> None:
    """Dramatiq's maintenance, asked for now: the messages a worker killed by an earlier test
    still held (a delayed ticket counts as delayed until then) go back to their queue. Dramatiq
    does it at random (one broker command in a thousand) once the worker's heartbeat is 60 s
    old: up to two minutes of an idle farm waited for."""
    queue = Config.from_env().queue_name
    for name in (queue, dq_name(queue)):
        broker.do_qsize(name)


def test_the_metrics_endpoint_needs_no_token_and_is_in_the_openapi_description(api_url):
    response = httpx.get(f"{api_url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert "# TYPE buildfarm_http_requests_total counter" in response.text
    assert "/metrics" in httpx.get(f"{api_url}/api/v1/openapi.json").json()["paths"]


def test_api_requests_are_counted_by_route_template_and_status_summed_over_both_api_processes(
    api_url, client, tenant_token
):
    created = client.post(
        "/deployments", json={"name": "m", "subdomain": unique_subdomain("metrics"), "source_type": "archive"}
    )
    assert created.status_code == 201, created.text
    deployment_id = created.json()["id"]
    url = f"{api_url}/api/v1/deployments/{deployment_id}"
    route = "/api/v1/deployments/{deployment_id}"
    before = scrape(f"{api_url}/metrics")

    # When 20 requests with the token and 5 without arrive on fresh connections, side by side
    # (so that both gunicorn workers answer some of them)
    def get(token: str | None) -> int:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(url, headers=headers, timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(get, [tenant_token[1]] * 20 + [None] * 5))
    assert codes == [200] * 20 + [401] * 5

    # Then every scrape, whichever process answers it, counts all of them under the template
    for _ in range(6):
        after = scrape(f"{api_url}/metrics")
        ok = dict(method="GET", route=route, status="200")
        refused = dict(method="GET", route=route, status="401")
        assert value(after, "buildfarm_http_requests_total", **ok) - value(
            before, "buildfarm_http_requests_total", **ok
        ) == pytest.approx(20)
        assert value(after, "buildfarm_http_requests_total", **refused) - value(
            before, "buildfarm_http_requests_total", **refused
        ) == pytest.approx(5)
        count = "buildfarm_http_request_duration_seconds_count"
        assert value(after, count, **ok) - value(before, count, **ok) == pytest.approx(20)
        assert value(after, "buildfarm_http_request_duration_seconds_bucket", **ok, le="+Inf") == value(
            after, count, **ok
        )
    # ...and never under the raw path
    assert not any(deployment_id in dict(labels).get("route", "") for _, labels in after)


def test_the_queue_depth_gauge_counts_a_build_waiting_for_a_worker(api_url, client):
    # Given no worker running (this test starts none)
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    before = scrape(f"{api_url}/metrics")

    # When a build is deployed, it waits in the queue
    build = deploy(client, deployment)
    waiting = scrape(f"{api_url}/metrics")
    for name, labels in (
        ("buildfarm_queue_depth", {"queue": "builds"}),
        ("buildfarm_queue_unacked", {"queue": "builds"}),
        ("buildfarm_builds_active", {"status": "pending"}),
    ):
        assert value(waiting, name, **labels) - value(before, name, **labels) == 1, name

    # ...and once cancelled it is no longer pending (its message stays queued: a slot ticket that
    # runs another pending build, if any, never the cancelled one)
    assert client.post(build_path(build) + "/cancel").status_code == 200
    after = scrape(f"{api_url}/metrics")
    assert value(after, "buildfarm_builds_active", status="pending") == value(
        before, "buildfarm_builds_active", status="pending"
    )


def test_a_successful_build_moves_the_worker_series_by_exactly_one_build(
    api_url, client, tenant_token, metrics_workers, redis_client, s3, config
):
    worker = metrics_workers()
    wait_for_an_idle_farm(api_url)
    before = worker.scrape()
    assert value(before, "buildfarm_builds_running") == 0

    deployment = archive_deployment(client, context_archive(dockerfile("echo metrics && sleep 2")))
    build = deploy(client, deployment)

    # While it runs, the host counts one running build
    wait_for_status(client, build, statuses=("building",))
    wait_until(lambda: value(worker.scrape(), "buildfarm_builds_running") == 1, 30, what="a running build")
    done = wait_for_status(client, build)
    assert done["status"] == "success"

    # Then: one more success, one more duration and queue wait, and the log's bytes archived
    wait_until(
        lambda: redis_client.hget(keys.build(build["id"]), "log_state") == b"archived",
        30,
        what="the log archive",
    )
    archived = s3.get_object(config.logs_bucket, f"{deployment['id']}/{build['id']}.log").read()
    assert archived

    def delta(name: str, **labels: str) -> float:
        return value(worker.scrape(), name, **labels) - value(before, name, **labels)

    wait_until(lambda: delta("buildfarm_log_bytes_archived_total") > 0, 10, what="the archived bytes")
    assert delta("buildfarm_log_bytes_archived_total") == len(archived)
    assert delta("buildfarm_builds_total", status="success") == 1
    assert delta("buildfarm_builds_total", status="failed") == 0
    assert delta("buildfarm_build_duration_seconds_count", status="success") == 1
    assert delta("buildfarm_build_duration_seconds_sum", status="success") >= 2  # the RUN step sleeps 2 s
    assert delta("buildfarm_build_queue_wait_seconds_count") == 1
    assert delta("buildfarm_tenant_queue_wait_seconds_count", tenant=tenant_token[0]) == 1
    assert delta("buildfarm_lease_takeovers_total") == 0
    assert delta("buildfarm_log_archive_failures_total") == 0
    assert value(worker.scrape(), "buildfarm_builds_running") == 0


def test_a_users_failure_and_the_farms_are_told_apart_in_the_record_the_log_and_the_counters(
    api_url, client, metrics_workers, s3, config
):
    worker = metrics_workers()
    wait_for_an_idle_farm(api_url)
    before = worker.scrape()

    # Given a build whose RUN step fails (the user's mistake)
    mistaken = wait_for_status(
        client, deploy(client, archive_deployment(client, context_archive(dockerfile("exit 7"))))
    )
    # ...and a build whose stored source the farm's S3 lost after the upload
    archive = context_archive(dockerfile("echo never built"))
    deployment = archive_deployment(client, archive)
    s3.remove_object(
        config.sources_bucket, archive_key(deployment["id"], hashlib.sha256(archive).hexdigest())
    )
    lost = wait_for_status(client, deploy(client, deployment))

    # Then each says whose it is: the user's with the step's own words, the farm's naming the
    # part that failed and what became of the build, never an exception's repr
    assert mistaken["status"] == "failed" and mistaken["error_kind"] == "user"
    assert mistaken["error"].endswith("exit code: 7")
    assert lost["status"] == "failed" and lost["error_kind"] == "infrastructure" and lost["attempt"] == 1
    # (the farm's S3, rclone, answers a missing object in a form the client cannot parse)
    assert lost["error"] == "S3 did not give the build's stored source: nothing was built"
    assert logs(client, lost).splitlines()[-2:] == [f"ERROR: {lost['error']}", "Build failed"]

    # ...and the worker counts one failure of each kind
    def delta(**labels: str) -> float:
        name = "buildfarm_build_failures_total"
        return value(worker.scrape(), name, **labels) - value(before, name, **labels)

    assert delta(error_kind="user") == delta(error_kind="infrastructure") == 1
    assert delta(error_kind="timeout") == delta(error_kind="cancelled") == 0


def test_every_line_the_api_server_logs_is_json_like_the_workers(api_url, logs_dir):
    # Given the real API (gunicorn master, two uvicorn workers), up and answering
    assert httpx.get(f"{api_url}/healthz").status_code == 200
    # Then every line it has logged is one JSON object: gunicorn's master, uvicorn's workers
    records = [json.loads(line) for line in (logs_dir / "api.log").read_text().splitlines() if line]
    loggers = {record["logger"] for record in records}
    assert {"gunicorn.error", "uvicorn.error"} <= loggers, loggers
    messages = [record["message"] for record in records]
    assert any(m.startswith("Booting worker") for m in messages)
    assert sum(m == "Application startup complete." for m in messages) == 2
    for record in records:
        assert {"time", "level", "logger", "message", "process", "thread"} <= set(record)


def test_every_worker_log_line_about_a_build_is_json_with_its_build_and_deployment_ids(
    api_url, client, metrics_workers
):
    worker = metrics_workers()
    deployment = archive_deployment(client, context_archive(dockerfile("echo json-logs")))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "success"

    def lines_about_the_build() -> list[str]:
        text = worker.process.log.read_text(errors="replace")
        return [line for line in text.splitlines() if build["id"] in line]

    wait_until(
        lambda: any(f"build {build['id']} success" in line for line in lines_about_the_build()),
        30,
        what="the worker's line about the build's end",
    )
    records = [json.loads(line) for line in lines_about_the_build()]  # each line is one JSON object
    assert len(records) >= 2
    for record in records:
        assert record["build_id"] == build["id"], record
        assert record["deployment_id"] == deployment["id"], record
        assert {"time", "level", "logger", "message", "process", "thread"} <= set(record)
        assert record["time"].endswith("Z")
    messages = [record["message"] for record in records]
    assert f"build {build['id']} claimed (attempt 1)" in messages
    assert f"build {build['id']} success" in messages


def test_a_build_taken_over_after_its_worker_died_is_counted_as_a_takeover_by_the_host_that_took_it(
    api_url, client, metrics_workers
):
    first, second = metrics_workers(**FAST_LEASES), metrics_workers(**FAST_LEASES)
    wait_for_an_idle_farm(api_url)
    deployment = archive_deployment(
        client, context_archive(dockerfile("echo started && sleep 3 && echo finished"))
    )
    build = deploy(client, deployment)
    wait_until(
        lambda: "started" in client.get(build_path(build) + "/logs").text, 60, what="the RUN step to start"
    )
    running = client.get(build_path(build)).json()
    children = Path(f"/proc/{first.process.pid}/task/{first.process.pid}/children").read_text().split()
    holder, survivor = (first, second) if running["worker"].rsplit(":", 1)[1] in children else (second, first)
    before = survivor.scrape()

    # When the host running the build dies at once
    os.killpg(holder.process.pid, signal.SIGKILL)
    done = wait_for_status(client, build, timeout=90)

    # Then the other host took it over, counted the takeover, and the success
    assert done["status"] == "success" and done["attempt"] == 2
    after = survivor.scrape()
    assert (
        value(after, "buildfarm_lease_takeovers_total") - value(before, "buildfarm_lease_takeovers_total")
        == 1
    )
    assert (
        value(after, "buildfarm_builds_total", status="success")
        - value(before, "buildfarm_builds_total", status="success")
        == 1
    )
    # (a takeover has no queue wait: only first starts are timed)
    assert value(after, "buildfarm_build_queue_wait_seconds_count") == value(
        before, "buildfarm_build_queue_wait_seconds_count"
    )
