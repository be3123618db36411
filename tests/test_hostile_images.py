"""Issue 13, item 2, end to end on the real farm (gunicorn API, Dramatiq worker, dockerd with
BuildKit and the classic builder, registry, Redis, S3): a second tenant's Dockerfile names the
first tenant's image — in FROM directly, through an ARG default or a build arg, in COPY --from or
RUN --mount, as its `# syntax=` frontend, through the registry's loopback alias, by image id, in
an uploaded Dockerfile or a git repository — or has the engine ADD a URL of the registry, and the
build fails as the user's mistake, before the engine builds anything.
The tenant's own images and the farm's base image build."""

from __future__ import annotations

import contextlib
import subprocess
import uuid

import httpx
import pytest

from common.tokens import create_token
from tests.conftest import (
    BASE_IMAGE,
    alone_on_the_queue,
    api_client,
    free_port,
    served_bare_repository,
    wait_until,
)
from tests.farm import archive_deployment, context_archive, deploy, logs, wait_for_status

pytestmark = pytest.mark.e2e

REFUSED_REGISTRY = "is in the farm's registry but is not an image of your deployments"
REFUSED_ID = "names a local image by its id"


@pytest.fixture
def stranger(request, redis_client) -> httpx.Client:
    """A second tenant's client of the API."""
    token = create_token(redis_client, f"stranger-{uuid.uuid4().hex[:10]}", "tests")
    with api_client(request, "/api/v1", {"Authorization": f"Bearer {token}"}) as client:
        yield client


def built(client: httpx.Client, recipe: str, **fields) -> dict:
    """A deployment of `recipe` built to success; its build."""
    deployment = archive_deployment(client, context_archive(recipe), **fields)
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "success", logs(client, build)
    return build


def refused(client: httpx.Client, build: dict, reason: str, reference: str) -> dict:
    """Asserts the build failed as the user's mistake naming `reference`, said last in its log,
    and that nothing of the Dockerfile ran."""
    done = wait_for_status(client, build)
    text = logs(client, done)
    assert done["status"] == "failed", text
    assert "Internal error" not in done["error"]
    assert reference in done["error"] and reason in done["error"], done["error"]
    assert text.splitlines()[-2:] == [f"ERROR: {done['error']}", "Build failed"]
    assert "ran-" not in text.replace("echo ran-", "")
    return done


def hostile(recipe: str) -> str:
    """A Dockerfile whose first stage would print `ran-…` if the engine started building it."""
    return f"FROM {BASE_IMAGE} AS first\nRUN echo ran-{uuid.uuid4().hex[:8]}\n{recipe}"


@pytest.fixture(scope="module")
def victim(request, redis_client, worker) -> dict:
    """Tenant A's deployment, built: its build (with its image tag in the farm's registry)."""
    token = create_token(redis_client, f"victim-{uuid.uuid4().hex[:10]}", "tests")
    with api_client(request, "/api/v1", {"Authorization": f"Bearer {token}"}) as client:
        return built(client, f"FROM {BASE_IMAGE}\nRUN echo private > /secret.txt\n")


def loopback_alias(tag: str) -> str:
    """The same image by the registry's loopback address instead of `localhost`."""
    return tag.replace("localhost:", "127.0.0.1:", 1)


def test_from_another_tenants_image_is_refused_directly_and_by_the_loopback_alias(stranger, victim, worker):
    for reference in (victim["image_tag"], loopback_alias(victim["image_tag"])):
        deployment = archive_deployment(stranger, context_archive(hostile(f"FROM {reference}\n")))
        refused(stranger, deploy(stranger, deployment), REFUSED_REGISTRY, reference)


def test_from_another_tenants_image_through_an_arg_default_or_a_build_arg_is_refused(
    stranger, victim, worker
):
    tag = victim["image_tag"]
    recipe = f"ARG BASE={tag}\n" + hostile("FROM ${BASE}\n")
    refused(
        stranger,
        deploy(stranger, archive_deployment(stranger, context_archive(recipe))),
        REFUSED_REGISTRY,
        tag,
    )
    recipe = f"ARG BASE={BASE_IMAGE}\n" + hostile("FROM $BASE\n")
    deployment = archive_deployment(stranger, context_archive(recipe))
    refused(stranger, deploy(stranger, deployment, build_args={"BASE": tag}), REFUSED_REGISTRY, tag)


def test_copy_from_and_a_run_mount_of_another_tenants_image_are_refused(stranger, victim, worker):
    tag = victim["image_tag"]
    for line in (
        f"COPY --from={tag} /secret.txt /",
        f"RUN --mount=type=bind,from={tag},target=/v cat /v/secret.txt",
    ):
        deployment = archive_deployment(stranger, context_archive(hostile(f"FROM {BASE_IMAGE}\n{line}\n")))
        refused(stranger, deploy(stranger, deployment), REFUSED_REGISTRY, tag)


@pytest.mark.parametrize("how", ["frontend", "add"])
def test_a_frontend_image_and_an_add_url_on_the_registry_are_refused(stranger, victim, worker, config, how):
    # `# syntax=` makes the engine pull an image and run it; ADD has the engine fetch a URL.
    tag = victim["image_tag"]
    tags_url = f"http://{config.registry}/v2/{tag.split('/')[1].split(':')[0]}/tags/list"
    recipe, reference = {
        "frontend": (f"# syntax={tag}\n" + hostile(""), tag),
        "add": (hostile(f"ADD {tags_url} /tags\n"), tags_url),
    }[how]
    deployment = archive_deployment(stranger, context_archive(recipe))
    refused(stranger, deploy(stranger, deployment), "farm's registry", reference)


def test_an_image_id_is_refused(stranger, victim, worker, docker_client):
    image_id = docker_client.inspect_image(victim["image_tag"])["Id"]
    for reference in (image_id, image_id.removeprefix("sha256:")[:12]):
        deployment = archive_deployment(stranger, context_archive(hostile(f"FROM {reference}\n")))
        refused(stranger, deploy(stranger, deployment), REFUSED_ID, reference)


def test_a_dockerfile_uploaded_beside_the_archive_is_checked(stranger, victim, worker):
    deployment = archive_deployment(stranger, context_archive(f"FROM {BASE_IMAGE}\n"))
    uploaded = stranger.post(
        f"/deployments/{deployment['id']}/upload",
        files={
            "archive": ("src.tar.gz", context_archive(None)),
            "dockerfile": ("Dockerfile", hostile(f"FROM {victim['image_tag']}\n").encode()),
        },
    )
    assert uploaded.status_code == 200, uploaded.text
    refused(stranger, deploy(stranger, deployment), REFUSED_REGISTRY, victim["image_tag"])


def test_a_tenant_builds_from_its_own_image_under_either_name_and_from_the_base_image(stranger, worker):
    own = built(stranger, f"FROM {BASE_IMAGE}\nRUN echo mine > /mine.txt\n")
    for reference in (own["image_tag"], loopback_alias(own["image_tag"])):
        build = built(
            stranger, f"FROM {reference}\nCOPY --from={reference} /mine.txt /copy.txt\nRUN cat /copy.txt\n"
        )
        assert "The Dockerfile names 1 image(s) or URL(s), each one this build may use" in logs(
            stranger, build
        )


@pytest.fixture
def git_repo(tmp_path):
    """`publish(dockerfile)` commits a Dockerfile to a repository served on loopback and
    returns the repository's URL."""
    work = tmp_path / "work"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    with contextlib.ExitStack() as servers:

        def publish(recipe: str) -> str:
            subprocess.run([*git, "init", "-q", str(work)], check=True)
            (work / "Dockerfile").write_text(recipe)
            subprocess.run([*git, "-C", str(work), "add", "."], check=True)
            subprocess.run([*git, "-C", str(work), "commit", "-qm", "c"], check=True)
            return servers.enter_context(served_bare_repository(work, tmp_path / "srv" / "app.git"))

        yield publish


def test_a_git_repositorys_dockerfile_is_checked(stranger, victim, worker, git_repo):
    url = git_repo(hostile(f"FROM {loopback_alias(victim['image_tag'])}\n"))
    created = stranger.post(
        "/deployments", json={"name": "git", "subdomain": f"git-{uuid.uuid4().hex[:10]}", "repo_url": url}
    )
    assert created.status_code == 201, created.text
    refused(stranger, deploy(stranger, created.json()), REFUSED_REGISTRY, loopback_alias(victim["image_tag"]))


def test_the_classic_builder_refuses_another_tenants_image_and_an_image_id_and_builds_its_own(
    stranger, victim, classic_worker, docker_client
):
    tag = victim["image_tag"]
    prefix = docker_client.inspect_image(tag)["Id"].removeprefix("sha256:")[:6]
    for reference, reason in ((tag, REFUSED_REGISTRY), (prefix, REFUSED_ID)):
        deployment = archive_deployment(stranger, context_archive(hostile(f"FROM {reference}\n")))
        refused(stranger, deploy(stranger, deployment), reason, reference)
    deployment = archive_deployment(
        stranger, context_archive(hostile(f"FROM {BASE_IMAGE}\nCOPY --from={tag} / /\n"))
    )
    refused(stranger, deploy(stranger, deployment), REFUSED_REGISTRY, tag)
    mine = f"mine-{uuid.uuid4().hex[:8]}"  # a new image: its RUN steps are not cached
    own = built(stranger, f"FROM {BASE_IMAGE}\nRUN echo {mine} > /mine.txt\n")
    build = built(stranger, f"FROM {loopback_alias(own['image_tag'])}\nRUN cat /mine.txt\n")
    assert mine in logs(stranger, build).splitlines()


@pytest.fixture
def engine_host_service(tmp_path):
    """An HTTP service on the engine's host, on loopback (as the worker's metrics and the local
    farm's S3 and registry are): its URL, and the text it serves."""
    secret = f"farm-internal-{uuid.uuid4().hex[:8]}"
    (tmp_path / "internal").write_text(secret)
    port = free_port()
    server = subprocess.Popen(
        ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: _answers(f"http://127.0.0.1:{port}/internal"), 10, what="the loopback service")
        yield f"http://127.0.0.1:{port}/internal", secret
    finally:
        server.kill()
        server.wait()


def _answers(url: str) -> bool:
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(url).status_code == 200
    return False


def test_an_add_url_on_the_engines_host_is_refused_by_the_outbound_rule(
    stranger, worker, logs_dir, engine_host_service
):
    url, secret = engine_host_service
    recipe = f"FROM {BASE_IMAGE}\nADD {url} /internal\nRUN cat /internal\n"
    # Given a worker whose rule opens loopback (the test farm's, for its git servers): the engine
    # fetches the URL from its own host, outside the build network's packet filter
    opened = built(stranger, recipe)
    assert secret in logs(stranger, opened)
    # When a worker with the farm's default rule takes the same Dockerfile
    with alone_on_the_queue(worker, logs_dir, "default-outbound", BUILDFARM_OUTBOUND_ALLOW=""):
        deployment = archive_deployment(stranger, context_archive(recipe))
        # Then it is refused before the engine fetches anything
        done = refused(stranger, deploy(stranger, deployment), "an address builds may not reach", url)
    assert secret not in logs(stranger, done)
