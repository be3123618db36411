"""Operations on the real farm: retrying a build from exactly its source, log retention, and
the Docker engine's disk budget on a worker host."""

from __future__ import annotations

import uuid

import pytest

from common.config import Config
from common.records import keys
from tests.farm import (
    archive_deployment,
    archived_log,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    registry_get,
    wait_for_status,
)
from worker.context import WorkerContext
from worker.docker_pruning import prune_docker
from worker.log_retention import expire_logs

pytestmark = pytest.mark.e2e


def test_a_retry_builds_exactly_the_same_archive_even_after_a_newer_upload(client, worker):
    first_archive = context_archive(dockerfile("cat /app/version"), {"version": b"one\n"})
    deployment = archive_deployment(client, first_archive)
    first = wait_for_status(client, deploy(client, deployment))
    assert first["status"] == "success"
    # A newer upload must not change what the retry builds
    newer = context_archive(dockerfile("cat /app/version"), {"version": b"two\n"})
    client.post(f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", newer)})
    response = client.post(build_path(first) + "/retry")
    assert response.status_code == 202
    retried = wait_for_status(client, response.json())
    assert retried["id"] != first["id"] and retried["number"] == first["number"] + 1
    assert retried["status"] == "success" and retried["commit_sha"] == first["commit_sha"]
    assert retried["image_tag"] == first["image_tag"]
    # ...from the first archive (its RUN step comes from the layer cache of the first build)
    assert f"Streaming source archive {first['commit_sha'][:12]}" in logs(client, retried)
    assert client.get(build_path(first)).json()["status"] == "success"


def test_a_retry_of_a_build_that_never_resolved_its_commit_is_a_conflict(client, worker):
    deployment = client.post(
        "/deployments",
        json={
            "name": "g",
            "subdomain": f"nocommit-{uuid.uuid4().hex[:8]}",
            "repo_url": "http://127.0.0.1:9/none.git",
        },
    ).json()
    failed = wait_for_status(client, deploy(client, deployment))
    assert failed["status"] == "failed" and failed["commit_sha"] is None
    response = client.post(build_path(failed) + "/retry")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


@pytest.fixture
def worker_ctx(config, redis_client, s3):
    return WorkerContext(config, redis_client, s3, worker_id="ops-test:1")


def test_logs_older_than_the_retention_are_deleted_with_their_records_and_then_not_available(
    client, worker, worker_ctx, s3, config
):
    deployment = archive_deployment(client, context_archive(dockerfile("echo kept for a while")))
    build = wait_for_status(client, deploy(client, deployment))
    assert "kept for a while" in archived_log(worker_ctx.redis, s3, config, build, 30)
    archived = [f"{deployment['id']}/{build['id']}.{ext}" for ext in ("log", "json")]
    for key in archived:
        s3.stat_object(config.logs_bucket, key)
    worker_ctx.redis.zadd(keys.LOG_ARCHIVE_DONE, {build["id"]: 1}, xx=False)  # as if archived long ago
    assert "kept for a while" in logs(client, build)
    # When retention runs
    assert expire_logs(worker_ctx) >= 1
    # Then the log and its record are gone and the API says so
    for key in archived:
        with pytest.raises(Exception, match="NoSuchKey|does not exist"):
            s3.stat_object(config.logs_bucket, key)
    response = client.get(build_path(build) + "/logs")
    assert response.status_code == 404 and response.json()["message"] == "Build logs not available"
    assert client.get(build_path(build)).json()["status"] == "success"


def test_a_retention_of_zero_days_keeps_logs_forever(worker_ctx, config):
    keeping = WorkerContext(
        Config(**{**config.__dict__, "log_retention_days": 0}), worker_ctx.redis, worker_ctx.s3
    )
    assert expire_logs(keeping) == 0


# Its pruning removes the shared engine's whole build cache: run alone (deploy/local/test).
@pytest.mark.engine_wide
def test_past_its_disk_budget_a_worker_host_removes_the_images_it_pushed_but_not_the_base(
    client, worker, config, redis_client, s3, docker_client
):
    deployment = archive_deployment(client, context_archive(dockerfile("echo to be pruned")))
    build = wait_for_status(client, deploy(client, deployment))
    repository = build["image_tag"].rsplit(":", 1)[0]
    assert docker_client.images(name=repository)
    tight = Config(**{**config.__dict__, "docker_disk_budget_bytes": 1})
    ctx = WorkerContext(tight, redis_client, s3)
    # (An engine kept from earlier runs may hold older pushed images: those may go.)
    prune_docker(ctx)
    assert docker_client.images(name=repository), "a fresh image may still be on its way to the registry"
    removed = prune_docker(ctx, keep_recent_s=0)
    assert removed["pushed"] >= 1
    assert not docker_client.images(name=repository)
    assert docker_client.images(name="buildfarm/busybox")
    # The image lives on in the registry
    repository, tag = build["image_tag"].split("/", 1)[1].rsplit(":", 1)
    assert tag in registry_get(config, f"{repository}/tags/list").json()["tags"]


# Its pruning removes the shared engine's whole build cache: run alone (deploy/local/test).
@pytest.mark.engine_wide
def test_an_image_another_was_built_from_is_pruned_after_its_child(
    client, classic_worker, config, redis_client, s3, docker_client
):
    # Given a pushed image and one built from it by the classic builder, which records the parent
    parent = archive_deployment(client, context_archive(dockerfile(f"echo parent-{uuid.uuid4().hex}")))
    parent_tag = wait_for_status(client, deploy(client, parent))["image_tag"]
    child = archive_deployment(
        client, context_archive(f"FROM {parent_tag}\nRUN echo child-{uuid.uuid4().hex}\n")
    )
    assert wait_for_status(client, deploy(client, child))["status"] == "success"
    ctx = WorkerContext(Config(**{**config.__dict__, "docker_disk_budget_bytes": 1}), redis_client, s3)
    # When the host is past its budget, the parent (older) cannot go before its child
    prune_docker(ctx, keep_recent_s=0)
    # Then the pruning went on past it, and the next round takes it
    assert not docker_client.images(name=f"{config.registry}/{child['subdomain']}")
    prune_docker(ctx, keep_recent_s=0)
    assert not docker_client.images(name=parent_tag.rsplit(":", 1)[0])
