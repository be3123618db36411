"""Only the farm's workers can push to or pull from its registry: the test farm's registry (as in
deploy/compose.yaml and deploy/k8s) takes the workers' htpasswd login and nothing else, on the
real registry and Docker engine that `make test` starts."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.conftest import BASE_IMAGE, unique_subdomain
from tests.farm import archive_deployment, context_archive, deploy, dockerfile, registry_get, wait_for_status
from worker.build_types import DockerError
from worker.docker_build import push_image, registry_down

pytestmark = pytest.mark.e2e

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


@pytest.fixture
def registry_tag(config, docker_client):
    """The test image, tagged for the farm's registry under a repository of this test."""
    repository = f"{config.registry}/{unique_subdomain('auth')}"
    tag = uuid.uuid4().hex[:8]
    docker_client.tag(BASE_IMAGE, repository, tag)
    yield f"{repository}:{tag}"
    docker_client.remove_image(f"{repository}:{tag}")


def test_the_test_farm_has_a_registry_login_for_its_workers(config):
    # Without one, every test below would pass against an open registry.
    assert config.registry_username and config.registry_password


def test_the_registry_answers_anonymous_reads_and_pushes_with_401(config):
    base = f"http://{config.registry}/v2"
    anonymous = [
        httpx.get(f"{base}/"),
        httpx.get(f"{base}/_catalog"),
        httpx.get(f"{base}/library/anything/tags/list"),
        httpx.post(f"{base}/library/anything/blobs/uploads/"),
    ]
    for response in anonymous:
        assert response.status_code == 401, (response.request.url, response.status_code)
        assert response.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = httpx.get(f"{base}/", auth=(config.registry_username, "not-the-password"))
    assert wrong.status_code == 401
    assert registry_get(config, "").status_code == 200


def test_the_engine_cannot_push_without_the_workers_login(docker_client, registry_tag):
    lines: list[str] = []
    with pytest.raises(DockerError, match="no basic auth credentials") as refused:
        push_image(docker_client, registry_tag, None, lines.append)
    # A refusal is not a registry that did not answer: the build does not push it again.
    assert registry_down(refused.value) is None


def test_the_engine_pushes_with_the_workers_login(config, docker_client, registry_tag):
    login = (config.registry_username, config.registry_password)
    digest = push_image(docker_client, registry_tag, login, [].append)
    assert digest.startswith("sha256:")
    repository, tag = registry_tag.split("/", 1)[1].rsplit(":", 1)
    assert httpx.get(f"http://{config.registry}/v2/{repository}/manifests/{tag}").status_code == 401
    manifest = registry_get(config, f"{repository}/manifests/{tag}", headers={"Accept": MANIFEST_V2})
    assert manifest.headers["Docker-Content-Digest"] == digest


def test_a_farm_build_pushes_through_the_login_and_its_image_is_closed_to_anyone_else(client, worker, config):
    deployment = archive_deployment(client, context_archive(dockerfile("echo pushed with a login")))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "success", build.get("error")
    repository, tag = build["image_tag"].split("/", 1)[1].rsplit(":", 1)
    assert registry_get(config, f"{repository}/manifests/{tag}").status_code == 200
    assert httpx.get(f"http://{config.registry}/v2/{repository}/manifests/{tag}").status_code == 401
