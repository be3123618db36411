"""End to end through real processes: gunicorn API, Dramatiq worker, dockerd, registry, Redis,
S3 (and a git server on loopback). Nothing here is mocked."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import boto3
import pytest
import redis

from tests.conftest import BIN, ROOT, Process, free_port, missing, process_env, wait_until
from tests.farm import (
    archive_deployment,
    archived_log,
    build_in_its_run_step,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    registry_get,
    service_killed,
    wait_for_status,
    worker_children_rss_kib,
    ws_lines,
)

pytestmark = pytest.mark.e2e


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def registry_tags(config, repository: str) -> list[str]:
    response = registry_get(config, f"{repository}/tags/list")
    return response.json().get("tags") or [] if response.status_code == 200 else []


def test_an_archive_build_goes_from_upload_to_a_pushed_image_with_its_log(
    client, api_url, tenant_token, worker, config, s3, redis_client
):
    archive = context_archive(dockerfile("echo building step one", "seq 1 3"), {"a.txt": b"hello\n"})
    deployment = archive_deployment(client, archive)
    build = deploy(client, deployment)
    assert build["status"] == "pending" and build["image_tag"] is None and build["started_at"] is None

    # Given a client following the log from the start, while the build runs
    streamed = {}
    follower = threading.Thread(
        target=lambda: streamed.update(
            zip(("lines", "code"), ws_lines(api_url, tenant_token[1], build), strict=True)
        )
    )
    follower.start()
    seen = set()
    while (current := client.get(build_path(build)).json())["status"] not in (
        "success",
        "failed",
        "cancelled",
    ):
        seen.add(current["status"])
        time.sleep(0.05)
    follower.join(60)

    # Then the build succeeded with the image pushed under the seed's tag scheme
    assert current["status"] == "success", logs(client, build)
    assert current["error"] is None and current["error_kind"] is None
    sha = hashlib.sha256(archive).hexdigest()
    assert current["commit_sha"] == sha
    assert current["image_tag"] == f"{config.registry}/{deployment['subdomain']}:{sha[:8]}"
    assert sha[:8] in registry_tags(config, deployment["subdomain"])
    assert current["image_digest"].startswith("sha256:")
    manifest = registry_get(
        config,
        f"{deployment['subdomain']}/manifests/{sha[:8]}",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    assert (
        manifest.status_code == 200 and manifest.headers["Docker-Content-Digest"] == current["image_digest"]
    )
    # ...with times in order
    created, started, finished = (parse_time(current[k]) for k in ("created_at", "started_at", "finished_at"))
    assert created <= started <= finished
    assert seen <= {"pending", "building"}
    # ...and BuildKit's progress as readable lines (each step once, its output, its time), live
    # and archived alike
    text = logs(client, build)
    lines = text.splitlines()
    run_step = next(line for line in lines if line.endswith("RUN echo building step one"))
    label = run_step.split()[0]
    assert re.fullmatch(r"\[\d/\d\]", label) and lines.count(run_step) == 1
    assert lines[lines.index(run_step) + 1] == "building step one"
    assert any(re.fullmatch(rf"{re.escape(label)} done in \d+\.\ds", line) for line in lines)
    assert not any(line.startswith("#") or "sha256:" in line and "digest" not in line for line in lines)
    assert text.index(run_step) < text.index("Pushing")
    assert streamed["code"] == 1000
    assert streamed["lines"] == text.splitlines()
    # ...the log archived as plain text (its build record: the test below)
    assert archived_log(redis_client, s3, config, build, 30) == text
    # ...and the deployment's status follows its latest build
    assert client.get(f"/deployments/{deployment['id']}").json()["status"] == "success"
    listed = client.get(f"/deployments/{deployment['id']}/builds").json()
    assert [b["id"] for b in listed] == [build["id"]] and listed[0]["status"] == "success"


def boto3_s3(config, endpoint: str):
    """An S3 client other than the farm's own (minio), as an archive reader would bring."""
    return boto3.client(
        "s3",
        endpoint_url=f"http://{endpoint}",
        aws_access_key_id=config.s3_access_key,
        aws_secret_access_key=config.s3_secret_key,
        region_name=config.s3_region,
    )


@contextlib.contextmanager
def restarted_s3_server(config, logs_dir: Path) -> Iterator[str]:
    """A second rclone S3 server on the farm's S3 data directory: it holds only what the disk
    holds, as the farm's server after a restart, which other tests still use."""
    data = Path(os.environ.get("BUILDFARM_STATE", ROOT / ".local")) / "s3"
    if not (data / config.logs_bucket).is_dir():
        missing(f"the rclone S3 data directory {data}")
    endpoint = f"127.0.0.1:{free_port()}"
    server = Process(
        [
            str(BIN / "rclone"),
            "serve",
            "s3",
            "--auth-key",
            f"{config.s3_access_key},{config.s3_secret_key}",
            "--addr",
            endpoint,
            str(data),
        ],
        process_env(),
        logs_dir / "restarted-s3.log",
    )

    def listening() -> bool:
        assert server.alive(), f"the second S3 server exited:\n{server.tail()}"
        host, port = endpoint.split(":")
        try:
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            return False
        return True

    try:
        wait_until(listening, 20, what="the second S3 server")
        yield endpoint
    finally:
        server.stop()


def test_an_archived_log_and_its_build_record_are_read_by_another_s3_client_even_after_an_s3_restart(
    client, worker, config, s3, redis_client, logs_dir
):
    """rclone's S3 server keeps object metadata only in memory: the build record is an object of
    its own beside the log, `{deployment_id}/{build_id}.json`, which any S3 client can read."""
    # Given a finished build whose log is archived
    deployment = archive_deployment(client, context_archive(dockerfile("echo read without the API")))
    build = wait_for_status(client, deploy(client, deployment))
    text = archived_log(redis_client, s3, config, build, 30)
    public = client.get(build_path(build)).json()
    assert public["status"] == "success" and public["finished_at"] and public["image_tag"]
    log, record = (f"{deployment['id']}/{build['id']}.{ext}" for ext in ("log", "json"))
    # When boto3 reads the bucket, from the farm's S3 server and from one started afresh
    with restarted_s3_server(config, logs_dir) as restarted:
        for endpoint in (config.s3_endpoint, restarted):
            reader = boto3_s3(config, endpoint)
            listed = reader.list_objects_v2(Bucket=config.logs_bucket, Prefix=f"{deployment['id']}/")
            # Then it finds the log and, beside it, the build record as the API returns it
            assert sorted(o["Key"] for o in listed["Contents"]) == [record, log], endpoint
            assert reader.get_object(Bucket=config.logs_bucket, Key=log)["Body"].read().decode() == text
            body = reader.get_object(Bucket=config.logs_bucket, Key=record)["Body"].read()
            assert json.loads(body) == public, endpoint


def test_the_queue_lives_in_a_redis_database_apart_from_the_records(client, worker, config, redis_client):
    """Dramatiq's maintenance runs KEYS over the queue's database (dispatch.lua): holding the
    records there would block Redis for the scan of every build ever kept."""
    deployment = archive_deployment(client, context_archive(dockerfile("echo queued apart")))
    assert wait_for_status(client, deploy(client, deployment))["status"] == "success"
    queue = redis.Redis.from_url(config.queue_redis_url)
    seconds, _ = redis_client.time()
    recent = (seconds - 30) * 1000  # Dramatiq's heartbeats are scored in milliseconds

    def heartbeating(client: redis.Redis) -> int:
        return client.zcount("dramatiq:__heartbeats__", recent, "+inf")

    assert heartbeating(queue) >= 1 and heartbeating(redis_client) == 0
    assert not list(queue.scan_iter("bf:*", count=1000))


def test_a_late_websocket_client_gets_the_whole_archived_log_and_can_resume(
    client, api_url, tenant_token, worker
):
    deployment = archive_deployment(client, context_archive(dockerfile("seq 1 50")))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "success"
    whole = logs(client, build).splitlines()
    lines, code = ws_lines(api_url, tenant_token[1], build)
    assert (lines, code) == (whole, 1000)
    rest, code = ws_lines(api_url, tenant_token[1], build, after=10)
    assert (rest, code) == (whole[10:], 1000)


def test_the_websocket_takes_the_token_as_a_subprotocol_and_refuses_strangers(
    client, api_url, tenant_token, worker
):
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    build = wait_for_status(client, deploy(client, deployment))
    url = api_url.replace("http://", "ws://") + "/api/v1" + build_path(build) + "/logs/stream"
    with connect(url, subprotocols=["bearer", tenant_token[1]]) as ws:
        assert ws.subprotocol == "bearer"
        assert ws.recv(timeout=10)
    with pytest.raises(InvalidStatus):
        connect(url, subprotocols=["bearer", "bf_wrong"])
    with pytest.raises(InvalidStatus):
        connect(
            url.replace(build["id"], "00000000-0000-4000-8000-000000000000"),
            additional_headers={"Authorization": f"Bearer {tenant_token[1]}"},
        )


def test_a_failing_run_step_fails_the_build_with_the_error_in_its_log(client, worker, config):
    deployment = archive_deployment(client, context_archive(dockerfile("echo about to fail && exit 3")))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "failed" and build["image_tag"] is None and build["finished_at"]
    assert build["error"].endswith("exit code: 3") and "echo about to fail" in build["error"]
    assert build["error_kind"] == "user"
    text = logs(client, build)
    assert "about to fail" in text
    last = text.splitlines()[-2:]
    assert last[0].startswith("ERROR: ") and last[0].endswith("exit code: 3") and last[1] == "Build failed"
    assert registry_tags(config, deployment["subdomain"]) == []


def test_a_missing_dockerfile_fails_the_build_with_a_clear_message(client, worker):
    deployment = archive_deployment(client, context_archive(None, {"app.txt": b"x"}))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "failed" and build["image_tag"] is None
    assert build["error"] == "Dockerfile not found: no file 'Dockerfile' in the build context"
    assert build["error_kind"] == "user"
    assert "ERROR: Dockerfile not found" in logs(client, build)


def test_an_inline_dockerfile_uploaded_with_the_archive_is_used(client, worker):
    archive = context_archive(None, {"a.txt": b"inline\n"})
    created = client.post(
        "/deployments", json={"name": "i", "subdomain": f"inline-{time.time_ns()}", "source_type": "archive"}
    ).json()
    inline = f"FROM {'buildfarm/busybox:latest'}\nCOPY a.txt /\nRUN cat /a.txt\n"
    client.post(
        f"/deployments/{created['id']}/upload",
        files={"archive": ("a.tar.gz", archive), "dockerfile": ("Dockerfile", inline.encode())},
    )
    build = wait_for_status(client, deploy(client, created))
    assert build["status"] == "success", logs(client, build)
    assert "inline" in logs(client, build)


def test_a_git_build_resolves_the_branch_tip_to_its_full_sha(client, worker, config, two_commit_repo):
    url, (first, second) = two_commit_repo
    deployment = client.post(
        "/deployments",
        json={"name": "g", "subdomain": f"git-{time.time_ns()}", "repo_url": url, "branch": "main"},
    ).json()
    build = deploy(client, deployment)
    assert build["commit_sha"] is None
    build = wait_for_status(client, build)
    assert build["status"] == "success", logs(client, build)
    assert build["commit_sha"] == second and re.fullmatch(r"[0-9a-f]{40}", second)
    assert build["image_tag"] == f"{config.registry}/{deployment['subdomain']}:{second[:8]}"
    assert "version two" in logs(client, build)
    # A given commit is built instead of the tip.
    older = wait_for_status(client, deploy(client, deployment, commit_sha=first))
    assert older["status"] == "success" and older["commit_sha"] == first
    assert "version one" in logs(client, older)
    assert {second[:8], first[:8]} <= set(registry_tags(config, deployment["subdomain"]))


def test_an_unreachable_repository_fails_the_build_clearly(client, worker):
    port = free_port()  # nothing listens there
    deployment = client.post(
        "/deployments",
        json={
            "name": "g",
            "subdomain": f"gone-{time.time_ns()}",
            "repo_url": f"http://127.0.0.1:{port}/none.git",
        },
    ).json()
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "failed" and build["error"].startswith("git clone failed")
    assert build["error_kind"] == "user"
    assert "ERROR: git clone failed" in logs(client, build)


PAD = "." * 60


def build_watching_rss(client, process, step: str) -> tuple[dict, float]:
    """Runs a build of one RUN step; returns it and how far the worker's RSS grew (MiB)."""
    deployment = archive_deployment(client, context_archive(dockerfile(step)))
    rss_before = worker_children_rss_kib(process)
    build = deploy(client, deployment)
    peak, deadline = rss_before, time.monotonic() + 120
    while (current := client.get(build_path(build)).json())["status"] in ("pending", "building"):
        assert time.monotonic() < deadline, "the build did not end within 120 s"
        peak = max(peak, worker_children_rss_kib(process))
        time.sleep(0.05)
    assert current["status"] == "success", current
    return current, (peak - rss_before) / 1024


def numbered_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.endswith(PAD)]


def expected_lines(count: int) -> list[str]:
    return [f"{i:06d} {PAD}" for i in range(1, count + 1)]


def test_a_200k_line_log_arrives_whole_in_the_archive_with_bounded_worker_memory(
    client, classic_worker, config, s3, redis_client
):
    # The classic builder passes a step's output as fast as it comes (BuildKit: the tests below)
    build, growth_mib = build_watching_rss(client, classic_worker, f"seq -w 1 200000 | sed 's/$/ {PAD}/'")
    archived = archived_log(redis_client, s3, config, build, 60)
    assert numbered_lines(archived) == expected_lines(200_000), archived.splitlines()[-8:]
    print(f"\nworker RSS +{growth_mib:.1f} MiB for a {len(archived) / 1e6:.1f} MB log")
    assert growth_mib < 30, f"worker memory grew by {growth_mib:.1f} MiB"


def test_a_100k_line_buildkit_log_arrives_whole_with_bounded_worker_memory(
    client, worker, config, s3, redis_client
):
    # Within the local engine's speed limit for BuildKit's step output (1 MiB/s: 2,000 lines of
    # 68 bytes at most every 0.15 s)
    batch = f"printf '%06d {PAD}\\n' $(seq $((i * 2000 + 1)) $((i * 2000 + 2000)))"
    step = f"for i in $(seq 0 49); do {batch}; sleep 0.15; done"
    build, growth_mib = build_watching_rss(client, worker, step)
    archived = archived_log(redis_client, s3, config, build, 60)
    assert numbered_lines(archived) == expected_lines(100_000), archived.splitlines()[-8:]
    print(f"\nworker RSS +{growth_mib:.1f} MiB for a {len(archived) / 1e6:.1f} MB log")
    assert growth_mib < 30, f"worker memory grew by {growth_mib:.1f} MiB"


def test_a_buildkit_step_printing_faster_than_the_engine_forwards_is_clipped_and_the_build_goes_on(
    client, worker
):
    # Engine 20.10's BuildKit stalls a build for good once some 3.5 MB of a step's output are
    # pending; the engine's speed limit drops the excess instead, and says so in the log
    started = time.monotonic()
    build, _ = build_watching_rss(
        client, worker, f"seq -w 1 200000 | sed 's/$/ {PAD}/'; echo after the burst"
    )
    text = logs(client, build)
    assert "[output clipped, log limit 1MiB/s reached]" in text
    assert numbered_lines(text) == expected_lines(len(numbered_lines(text)))  # a prefix, in order
    assert time.monotonic() - started < 60


def test_a_log_whose_archive_fails_while_s3_is_down_is_archived_when_s3_returns(
    client, worker, config, s3, redis_client
):
    build = build_in_its_run_step(client, "sleep 2", "echo survived the outage")
    # When S3 goes down while the build runs
    with service_killed("s3"):
        build = wait_for_status(client, build)
        assert build["status"] == "success"
        time.sleep(2)
        # Then the build still ends, and its log is served from Redis meanwhile
        text = logs(client, build)
        assert "survived the outage" in text
    # ...and it is archived, whole, once S3 is back
    assert archived_log(redis_client, s3, config, build, 30) == text


def test_two_worker_processes_run_builds_in_parallel_each_exactly_once(client, worker, logs_dir):
    from tests.conftest import start_worker

    second = start_worker(logs_dir, name="second-worker")
    wait_until(lambda: "ready for action" in second.tail(), 30, what="the second worker to boot")
    try:
        deployments = [archive_deployment(client, context_archive(dockerfile("sleep 3"))) for _ in range(4)]
        builds = [deploy(client, d) for d in deployments]
        done = [wait_for_status(client, b, timeout=60) for b in builds]
    finally:
        second.stop()
    assert [b["status"] for b in done] == ["success"] * 4
    assert all(b["attempt"] == 1 for b in done)
    assert len({b["worker"] for b in done}) == 2, "both worker processes should have taken builds"
    for build in done:
        assert logs(client, build).count("RUN sleep 3") == 1
    spans = sorted((parse_time(b["started_at"]), parse_time(b["finished_at"])) for b in done)
    overlapping = sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    assert overlapping >= 1, "builds should have run at the same time"


def test_dramatiq_time_limit_cannot_cut_a_long_build():
    from dramatiq.middleware.time_limit import TimeLimit

    from common.broker import create_broker
    from common.config import Config

    broker = create_broker(Config())
    assert not any(isinstance(m, TimeLimit) for m in broker.middleware)
    assert Config().build_timeout_s == 30 * 60


def test_a_websocket_joining_mid_build_gets_every_line_once_in_order(client, api_url, tenant_token, worker):
    script = "for i in $(seq 1 60); do echo tick-$i; sleep 0.05; done"
    deployment = archive_deployment(client, context_archive(dockerfile(script)))
    build = deploy(client, deployment)
    # Join once the build has printed some ticks, not all
    wait_until(lambda: "tick-10" in client.get(build_path(build) + "/logs").text, 60, what="tick-10")
    lines, code = ws_lines(api_url, tenant_token[1], build)
    assert code == 1000
    final = logs(client, build).splitlines()
    assert lines == final
    assert [line for line in lines if line.startswith("tick-")] == [f"tick-{i}" for i in range(1, 61)]
