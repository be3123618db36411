"""Build args and no_cache through the API: on the deployment (create, PATCH), merged with a
deploy's (the deploy's win), on the build record, reused by a retry; and PATCH of a
deployment's other settings. No worker runs here, so the builds stay pending."""

import hashlib
import hmac
import json

import pytest

from common.contract import MAX_BUILD_ARGS
from common.tokens import create_token
from tests.conftest import unique_subdomain
from tests.farm import archive_deployment, build_path, context_archive, deploy, dockerfile

pytestmark = pytest.mark.in_process


def git_deployment(client, **fields) -> dict:
    response = client.post(
        "/deployments",
        json={
            "name": "git",
            "subdomain": unique_subdomain(),
            "repo_url": "http://127.0.0.1:9/a.git",
            **fields,
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def uploaded(client, **fields) -> dict:
    return archive_deployment(client, context_archive(dockerfile("true")), **fields)


def patch(client, deployment: dict, body: dict):
    return client.patch(f"/deployments/{deployment['id']}", json=body)


def assert_422(response, fragment: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["error"] == "validation_error"
    assert fragment in response.json()["message"], response.json()["message"]


def test_a_deployment_keeps_the_build_args_it_is_created_with(client):
    created = git_deployment(client, build_args={"NODE_ENV": "production", "_v2": "a=b c"})
    assert created["build_args"] == {"NODE_ENV": "production", "_v2": "a=b c"}
    assert client.get(f"/deployments/{created['id']}").json()["build_args"] == created["build_args"]
    # ...and a deployment without any has an empty object, not null
    assert git_deployment(client)["build_args"] == {}


@pytest.mark.parametrize(
    "build_args,fragment",
    [
        ({"1ST": "x"}, "Each name in 'build_args' must be an ARG name"),
        ({"BAD-NAME": "x"}, "Each name in 'build_args' must be an ARG name"),
        ({"BUILDKIT_INLINE_CACHE": "1"}, "not starting with a digit or 'BUILDKIT_'"),
        ({"A": "nul\x00inside"}, "Each value in 'build_args' must be text without NUL characters"),
        ({"A": "x" * 4097}, "Each value in 'build_args' must be at most 4096 characters"),
        ({"A": 1}, "Each value in 'build_args' must be of type string"),
        (
            {f"A{i}": "x" for i in range(MAX_BUILD_ARGS + 1)},
            f"'build_args' must have at most {MAX_BUILD_ARGS}",
        ),
        (["A=1"], "Field 'build_args' must be of type object"),
    ],
)
def test_bad_build_args_are_refused_with_a_clear_422_on_create_patch_and_deploy(client, build_args, fragment):
    body = {"name": "a", "subdomain": unique_subdomain(), "source_type": "archive", "build_args": build_args}
    assert_422(client.post("/deployments", json=body), fragment)
    deployment = uploaded(client)
    assert_422(patch(client, deployment, {"build_args": build_args}), fragment)
    assert_422(
        client.post(f"/deployments/{deployment['id']}/deploy", json={"build_args": build_args}), fragment
    )
    assert client.get(f"/deployments/{deployment['id']}/builds").json() == []


def test_a_deploy_merges_its_build_args_over_the_deployments_and_shows_them_with_no_cache(client):
    deployment = uploaded(client, build_args={"A": "deployment", "B": "deployment"})
    build = deploy(client, deployment, build_args={"B": "deploy", "C": "deploy"}, no_cache=True)
    expected = {"A": "deployment", "B": "deploy", "C": "deploy"}
    assert build["build_args"] == expected and build["no_cache"] is True
    assert client.get(build_path(build)).json()["build_args"] == expected
    assert client.get(build_path(build)).json()["no_cache"] is True
    [listed] = client.get(f"/deployments/{deployment['id']}/builds").json()
    assert listed["build_args"] == expected and listed["no_cache"] is True
    # The deploy's args are the build's, not the deployment's
    assert client.get(f"/deployments/{deployment['id']}").json()["build_args"] == {
        "A": "deployment",
        "B": "deployment",
    }
    # A plain deploy takes the deployment's args and the cache
    plain = deploy(client, deployment)
    assert plain["build_args"] == {"A": "deployment", "B": "deployment"} and plain["no_cache"] is False


def test_merged_build_args_past_the_limit_are_refused(client):
    half = MAX_BUILD_ARGS // 2 + 1
    deployment = uploaded(client, build_args={f"D{i}": "x" for i in range(half)})
    response = client.post(
        f"/deployments/{deployment['id']}/deploy", json={"build_args": {f"R{i}": "x" for i in range(half)}}
    )
    assert_422(response, f"Too many build args: {2 * half} with the deployment's, at most {MAX_BUILD_ARGS}")
    # Overriding the deployment's own names adds none
    overriding = {f"D{i}": "y" for i in range(half)}
    assert deploy(client, deployment, build_args=overriding)["build_args"] == overriding


def test_a_retry_reuses_the_retried_builds_args_and_no_cache_whatever_the_deployment_has_since(client):
    deployment = uploaded(client, build_args={"A": "1"})
    first = deploy(client, deployment, build_args={"B": "2"}, no_cache=True)
    assert patch(client, deployment, {"build_args": {"A": "changed"}}).status_code == 200
    response = client.post(build_path(first) + "/retry")
    assert response.status_code == 202, response.text
    retried = response.json()
    assert retried["id"] != first["id"]
    assert retried["build_args"] == {"A": "1", "B": "2"} and retried["no_cache"] is True


def test_a_push_webhook_builds_with_the_deployments_build_args(client, anonymous_client):
    deployment = git_deployment(client, build_args={"FROM_DEPLOYMENT": "yes"})
    body = json.dumps(
        {"ref": "refs/heads/main", "after": "3f786850e387550fdab836ed7e6dc881de23001b"}
    ).encode()
    signature = "sha256=" + hmac.new(deployment["webhook_secret"].encode(), body, hashlib.sha256).hexdigest()
    response = anonymous_client.post(
        f"/api/v1/webhooks/github/{deployment['id']}",
        content=body,
        headers={
            "Content-Type": "application/json",
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": signature,
        },
    )
    assert response.status_code == 202, response.text
    assert (
        response.json()["build_args"] == {"FROM_DEPLOYMENT": "yes"} and response.json()["no_cache"] is False
    )
    client.post(build_path(response.json()) + "/cancel")


def test_patch_replaces_each_field_given_and_leaves_the_others(client):
    deployment = git_deployment(client, build_args={"A": "1", "B": "2"}, build_timeout_s=60)
    changes = [
        {"name": "Renamed"},
        {"branch": "release/1.x"},
        {"dockerfile_path": "docker/Prod.Dockerfile"},
        {"build_timeout_s": 120},
        {"supersede_queued": True},
        {"build_args": {"C": "3"}},  # the whole set is replaced
    ]
    current = deployment
    for change in changes:
        response = patch(client, deployment, change)
        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["updated_at"] >= current["updated_at"]
        expected = {**current, **change, "updated_at": updated["updated_at"]}
        expected.pop("webhook_secret", None)  # shown in the create response only
        assert updated == expected
        current = client.get(f"/deployments/{deployment['id']}").json()
        assert current == updated
    # null: the farm's default timeout; {}: no build args
    cleared = patch(client, deployment, {"build_timeout_s": None, "build_args": {}}).json()
    assert cleared["build_timeout_s"] is None and cleared["build_args"] == {}
    again = client.get(f"/deployments/{deployment['id']}").json()
    assert again["build_timeout_s"] is None and again["build_args"] == {}


def test_the_next_build_uses_the_patched_settings(client):
    deployment = uploaded(client)
    patch(client, deployment, {"build_args": {"V": "2"}, "dockerfile_path": "Other.Dockerfile"})
    build = deploy(client, deployment)
    assert build["build_args"] == {"V": "2"}


def test_an_empty_patch_changes_nothing_and_returns_the_deployment(client):
    deployment = git_deployment(client)
    response = patch(client, deployment, {})
    assert response.status_code == 200
    deployment.pop("webhook_secret")
    assert response.json() == deployment
    no_body = client.patch(f"/deployments/{deployment['id']}")
    assert no_body.status_code == 400 and no_body.json()["message"] == "A JSON object body is required"


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"repo_url": "https://example.com/other.git"}, "Unknown field(s): repo_url"),
        ({"source_type": "git"}, "Unknown field(s): source_type"),
        ({"subdomain": "other"}, "Unknown field(s): subdomain"),
        ({"name": ""}, "not blank"),
        ({"dockerfile_path": "../x"}, "inside the build context"),
        ({"branch": "--upload-pack=x"}, "branch"),
        ({"build_timeout_s": 0}, "at least 1"),
        ({"supersede_queued": "yes"}, "type boolean"),
    ],
)
def test_bad_patches_are_refused_with_a_clear_422(client, body, fragment):
    deployment = git_deployment(client)
    assert_422(patch(client, deployment, body), fragment)


def test_only_a_git_deployment_has_a_branch_to_patch(client):
    deployment = uploaded(client)
    assert_422(patch(client, deployment, {"branch": "main"}), "Archive deployments have no 'branch'")
    assert client.get(f"/deployments/{deployment['id']}").json()["branch"] is None


def test_another_tenants_deployment_cannot_be_patched(client, anonymous_client, redis_client):
    deployment = git_deployment(client)
    stranger = {"Authorization": f"Bearer {create_token(redis_client, 'someone-else', 'tests')}"}
    response = anonymous_client.patch(
        f"/api/v1/deployments/{deployment['id']}", json={"name": "mine now"}, headers=stranger
    )
    assert response.status_code == 404 and response.json()["message"] == "Deployment not found"
    assert client.get(f"/deployments/{deployment['id']}").json()["name"] == "git"
    missing = client.patch("/deployments/00000000-0000-4000-8000-000000000000", json={"name": "x"})
    assert missing.status_code == 404
