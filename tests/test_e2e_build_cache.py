"""The cache follows a deployment across worker hosts (issue 12): every pushed image carries its
inline cache and the next build imports it from the registry. Proven on one engine by what a
host that never built the deployment has: none of its images and no build cache."""

from __future__ import annotations

import os
import subprocess
import uuid

import pytest

from tests.conftest import ROOT
from tests.farm import archive_deployment, build_path, context_archive, deploy, logs, wait_for_status

# It removes the shared engine's whole build cache, which other tests count on: run alone
# (deploy/local/test).
pytestmark = [pytest.mark.e2e, pytest.mark.engine_wide]


@pytest.fixture(scope="module")
def base_image(config, docker_client):
    """A base image of this module alone. BuildKit merges the steps of concurrent builds that
    start from the same image, and a merged step skips the cache the other build did not import
    (moby/buildkit#4674): on an engine shared with other builds, the proof would fail by chance."""
    name = f"buildfarm/busybox:cache-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_HOST": config.docker_host}
    subprocess.run([str(ROOT / "deploy/local/base-image"), name], check=True, env=env, capture_output=True)
    yield name
    docker_client.remove_image(name, force=True)


def cache_dockerfile(base_image: str) -> str:
    """A step that does real work (50 MB written), then the copy of a file that changes. The
    comment makes the RUN step new to the engine: no earlier run leaves it in the cache."""
    return (
        f"FROM {base_image}\n"
        f"RUN dd if=/dev/urandom of=/big bs=1M count=50 # {uuid.uuid4().hex}\n"
        "WORKDIR /app\n"
        "COPY app.txt .\n"
    )


def forget_deployment(docker_client, repository: str) -> None:
    """Leaves the engine as a new host finds it: none of the deployment's images and no build
    cache. Other images (the base image, other tests') stay; other builds only lose speed."""
    for image in docker_client.images(name=repository):
        for tag in image["RepoTags"] or []:
            if tag.startswith(f"{repository}:"):
                docker_client.remove_image(tag, force=True)
    docker_client.prune_builds(all=True)


def test_a_host_that_never_built_the_deployment_takes_its_unchanged_steps_from_the_registry(
    client, worker, docker_client, config, base_image
):
    # Given a deployment built and pushed once
    dockerfile = cache_dockerfile(base_image)
    deployment = archive_deployment(client, context_archive(dockerfile, {"app.txt": b"version one\n"}))
    first = wait_for_status(client, deploy(client, deployment))
    assert first["status"] == "success", logs(client, first)
    assert "[2/4] CACHED" not in logs(client, first)

    # When the engine forgets it, as a new host would, and one file of the source changes
    repository = f"{config.registry}/{deployment['subdomain']}"
    forget_deployment(docker_client, repository)
    assert not docker_client.images(name=repository)
    uploaded = client.post(
        f"/deployments/{deployment['id']}/upload",
        files={"archive": ("src.tar.gz", context_archive(dockerfile, {"app.txt": b"version two\n"}))},
    )
    assert uploaded.status_code == 200, uploaded.text
    second = wait_for_status(client, deploy(client, deployment))

    # Then the steps before the changed file come from the cache of the last image, the rest runs
    text = logs(client, second)
    assert second["status"] == "success", text
    assert f"importing cache manifest from {first['image_tag']}" in text
    cached = [line for line in text.splitlines() if line.endswith("] CACHED")]
    assert {"[2/4] CACHED", "[3/4] CACHED"} <= set(cached) and "[4/4] CACHED" not in cached
    assert "[4/4] done in" in text
    assert second["timings"]["steps"] == 4 and second["timings"]["cached_steps"] == len(cached)
    assert second["image_tag"] != first["image_tag"]
    assert client.get(build_path(second)).json()["image_digest"]
