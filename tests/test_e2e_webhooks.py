"""Git push webhooks (GitHub, GitLab) against the real API process and Redis; the last test
builds a pushed commit with a real worker from a real git repository served on loopback.
Webhook requests are sent without any bearer token: the deployment's secret authenticates."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from common.records import keys
from tests.conftest import unique_subdomain
from tests.farm import archive_deployment, build_path, context_archive, dockerfile, logs, wait_for_status

SHA = "3f786850e387550fdab836ed7e6dc881de23001b"
OTHER_SHA = "89e6c98d92887913cadf06b2adb97f26cde4849b"
ZERO = "0" * 40


@pytest.fixture
def git_deployment(client: httpx.Client):
    """Makes git deployments; afterwards cancels their builds still pending, so that the worker
    of the last test does not pick up builds of repositories that do not exist."""
    made = []

    def make(repo_url: str = "http://127.0.0.1:9/app.git", **fields) -> dict:
        response = client.post(
            "/deployments",
            json={"name": "hooks", "subdomain": unique_subdomain("hook"), "repo_url": repo_url, **fields},
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
        return made[-1]

    yield make
    for deployment in made:
        for build in client.get(
            f"/deployments/{deployment['id']}/builds", params={"status": "pending"}
        ).json():
            client.post(build_path(build) + "/cancel")


def push_payload(ref: str = "refs/heads/main", after: str = SHA, **extra) -> dict:
    """The fields of a push both providers send, with some of the rest for realism."""
    return {
        "ref": ref,
        "before": OTHER_SHA,
        "after": after,
        "repository": {"full_name": "acme/app", "clone_url": "https://example.com/app.git"},
        "commits": [{"id": after, "message": "Change things"}],
        **extra,
    }


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def github(
    api_url: str,
    deployment: dict,
    payload: dict | None = None,
    *,
    secret: str | None = None,
    event: str = "push",
    delivery: str | None = None,
    body: bytes | None = None,
    headers: dict | None = None,
) -> httpx.Response:
    body = body if body is not None else json.dumps(payload or push_payload()).encode()
    sent = {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(secret or deployment["webhook_secret"], body),
        **(headers or {}),
    }
    return httpx.post(f"{api_url}/api/v1/webhooks/github/{deployment['id']}", content=body, headers=sent)


def gitlab(
    api_url: str,
    deployment: dict,
    payload: dict | None = None,
    *,
    token: str | None = None,
    event: str = "Push Hook",
    delivery: str | None = None,
    headers: dict | None = None,
) -> httpx.Response:
    payload = payload or push_payload(checkout_sha=SHA, object_kind="push")
    sent = {
        "Content-Type": "application/json",
        "X-Gitlab-Event": event,
        "X-Gitlab-Token": token or deployment["webhook_secret"],
        "Idempotency-Key": delivery or str(uuid.uuid4()),
        **(headers or {}),
    }
    return httpx.post(
        f"{api_url}/api/v1/webhooks/gitlab/{deployment['id']}", content=json.dumps(payload), headers=sent
    )


def builds_of(client: httpx.Client, deployment: dict) -> list[dict]:
    return client.get(f"/deployments/{deployment['id']}/builds").json()


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code and body["message"]


def test_a_signed_github_push_to_the_deployment_branch_queues_a_build_of_exactly_that_commit(
    api_url, client, git_deployment
):
    deployment = git_deployment()
    response = github(api_url, deployment)
    assert response.status_code == 202, response.text
    build = response.json()
    assert build["status"] == "pending" and build["commit_sha"] == SHA
    assert build["deployment_id"] == deployment["id"] and build["number"] == 1
    assert response.headers["Location"].endswith(f"/api/v1{build_path(build)}")
    assert [b["id"] for b in builds_of(client, deployment)] == [build["id"]]
    assert client.get(f"/deployments/{deployment['id']}").json()["latest_build_id"] == build["id"]


def test_a_gitlab_push_with_the_right_token_queues_a_build_of_that_commit(api_url, client, git_deployment):
    deployment = git_deployment(branch="release/2")
    payload = push_payload("refs/heads/release/2", after=SHA, checkout_sha=SHA, object_kind="push")
    response = gitlab(api_url, deployment, payload)
    assert response.status_code == 202, response.text
    assert response.json()["commit_sha"] == SHA and response.json()["status"] == "pending"
    assert [b["commit_sha"] for b in builds_of(client, deployment)] == [SHA]


def test_a_github_ping_is_answered_200_once_its_signature_verifies(api_url, client, git_deployment):
    deployment = git_deployment()
    ping = {"zen": "Keep it logically awesome.", "hook_id": 1, "hook": {"type": "Repository"}}
    response = github(api_url, deployment, ping, event="ping")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "ok",
        "message": f"Webhook verified for deployment {deployment['id']}",
    }
    assert_error(github(api_url, deployment, ping, event="ping", secret="wrong"), 401, "unauthorized")
    assert builds_of(client, deployment) == []


@pytest.mark.parametrize(
    "send",
    [
        pytest.param(lambda url, d: github(url, d, secret="not-the-secret"), id="github-wrong-secret"),
        pytest.param(
            lambda url, d: github(url, d, headers={"X-Hub-Signature-256": "sha256=" + "0" * 64}),
            id="github-forged-signature",
        ),
        pytest.param(
            lambda url, d: github(url, d, headers={"X-Hub-Signature-256": ""}), id="github-no-signature"
        ),
        pytest.param(
            lambda url, d: github(url, d, headers={"X-Hub-Signature-256": sign(d["webhook_secret"], b"{}")}),
            id="github-signature-of-another-body",
        ),
        pytest.param(
            lambda url, d: github(
                url,
                d,
                headers={
                    "X-Hub-Signature-256": sign(
                        d["webhook_secret"], json.dumps(push_payload()).encode()
                    ).replace("sha256=", "sha512=")
                },
            ),
            id="github-right-hmac-wrong-scheme",
        ),
        pytest.param(lambda url, d: gitlab(url, d, token="not-the-secret"), id="gitlab-wrong-token"),
        pytest.param(lambda url, d: gitlab(url, d, headers={"X-Gitlab-Token": ""}), id="gitlab-no-token"),
        pytest.param(
            lambda url, d: gitlab(url, {**d, "id": str(uuid.uuid4())}), id="gitlab-unknown-deployment"
        ),
        pytest.param(lambda url, d: github(url, {**d, "id": "not-a-uuid"}), id="github-malformed-id"),
    ],
)
def test_a_wrong_or_missing_signature_is_refused_with_401_and_builds_nothing(
    api_url, client, git_deployment, send
):
    deployment = git_deployment()
    response = send(api_url, deployment)
    assert_error(response, 401, "unauthorized")
    assert "Bearer" not in response.headers.get("WWW-Authenticate", "")
    assert builds_of(client, deployment) == []


def test_a_bearer_token_does_not_stand_in_for_the_webhook_signature(
    api_url, client, git_deployment, tenant_token
):
    deployment = git_deployment()
    response = github(
        api_url,
        deployment,
        headers={"Authorization": f"Bearer {tenant_token[1]}", "X-Hub-Signature-256": ""},
    )
    assert_error(response, 401, "unauthorized")
    assert builds_of(client, deployment) == []


def test_an_archive_deployment_has_no_webhook_secret_and_its_webhooks_are_refused(
    api_url, client, git_deployment
):
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    assert "webhook_secret" not in deployment
    assert_error(github(api_url, deployment, secret="guess"), 401, "unauthorized")
    assert_error(gitlab(api_url, deployment, token="guess"), 401, "unauthorized")
    rotate = client.post(f"/deployments/{deployment['id']}/webhook-secret")
    assert_error(rotate, 409, "conflict")
    assert builds_of(client, deployment) == []


@pytest.mark.parametrize(
    "provider,payload,event,fragment",
    [
        ("github", push_payload("refs/heads/feature"), "push", "branch 'feature' ignored"),
        ("github", push_payload("refs/tags/v1.0"), "push", "'refs/tags/v1.0' ignored"),
        ("github", push_payload(after=ZERO, deleted=True), "push", "deleted"),
        ("github", {"action": "opened", "number": 1}, "pull_request", "Event 'pull_request' ignored"),
        ("gitlab", push_payload("refs/heads/dev", checkout_sha=SHA), "Push Hook", "branch 'dev' ignored"),
        ("gitlab", push_payload("refs/tags/v1", checkout_sha=SHA), "Tag Push Hook", "ignored"),
        ("gitlab", push_payload(after=ZERO, checkout_sha=None), "Push Hook", "deleted"),
        ("gitlab", {"object_kind": "issue"}, "Issue Hook", "Event 'Issue Hook' ignored"),
    ],
)
def test_pushes_to_other_branches_tags_deletions_and_other_events_are_acknowledged_and_build_nothing(
    api_url, client, git_deployment, provider, payload, event, fragment
):
    deployment = git_deployment()
    send = github if provider == "github" else gitlab
    response = send(api_url, deployment, payload, event=event)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "ignored" and fragment in body["message"], body
    assert builds_of(client, deployment) == []


@pytest.mark.parametrize("provider", ["github", "gitlab"])
def test_a_redelivered_push_returns_the_same_build_and_builds_once(
    api_url, client, git_deployment, redis_client, provider
):
    deployment = git_deployment()
    send = github if provider == "github" else gitlab
    delivery = str(uuid.uuid4())
    first = send(api_url, deployment, delivery=delivery)
    again = send(api_url, deployment, delivery=delivery)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json()["id"] == first.json()["id"]
    assert [b["id"] for b in builds_of(client, deployment)] == [first.json()["id"]]
    # The delivery is remembered for 24 h, then forgotten.
    ttl = redis_client.ttl(keys.webhook_delivery(deployment["id"], provider, delivery))
    assert 23 * 3600 < ttl <= 24 * 3600
    # Another delivery (another event) of the same commit is a new build.
    assert send(api_url, deployment).json()["id"] != first.json()["id"]
    assert len(builds_of(client, deployment)) == 2


def test_an_older_gitlab_without_idempotency_key_is_deduplicated_by_its_event_uuid(
    api_url, client, git_deployment
):
    deployment = git_deployment()
    event_uuid = {"Idempotency-Key": "", "X-Gitlab-Event-UUID": str(uuid.uuid4())}
    first = gitlab(api_url, deployment, headers=event_uuid)
    again = gitlab(api_url, deployment, headers=event_uuid)
    assert first.status_code == again.status_code == 202 and again.json()["id"] == first.json()["id"]
    assert len(builds_of(client, deployment)) == 1


def test_concurrent_redeliveries_of_one_push_create_one_build(api_url, client, git_deployment):
    deployment = git_deployment()
    delivery = str(uuid.uuid4())
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: github(api_url, deployment, delivery=delivery), range(16)))
    [build] = builds_of(client, deployment)
    for answer in answers:
        # Each gets the one build, or a 409 while the first delivery is still storing it.
        assert (answer.status_code == 202 and answer.json()["id"] == build["id"]) or (
            answer.status_code == 409 and answer.json()["error"] == "conflict"
        ), answer.text
    assert sum(answer.status_code == 202 for answer in answers) >= 1


def test_the_webhook_secret_is_shown_once_and_a_rotated_one_replaces_it_at_once(
    api_url, client, git_deployment
):
    deployment = git_deployment()
    old = deployment["webhook_secret"]
    assert len(old) == 64 and int(old, 16) >= 0
    assert "webhook_secret" not in client.get(f"/deployments/{deployment['id']}").json()
    assert all("webhook_secret" not in d for d in client.get("/deployments").json())

    rotated = client.post(f"/deployments/{deployment['id']}/webhook-secret")
    assert rotated.status_code == 200, rotated.text
    new = rotated.json()["webhook_secret"]
    assert len(new) == 64 and new != old
    assert_error(github(api_url, deployment, secret=old), 401, "unauthorized")
    assert_error(gitlab(api_url, deployment, token=old), 401, "unauthorized")
    assert github(api_url, deployment, secret=new).status_code == 202
    assert gitlab(api_url, deployment, token=new).status_code == 202
    assert "webhook_secret" not in client.get(f"/deployments/{deployment['id']}").json()


def test_rotating_needs_the_owning_tenant(api_url, client, git_deployment, redis_client):
    from common.tokens import create_token

    deployment = git_deployment()
    other = {"Authorization": f"Bearer {create_token(redis_client, 'other-tenant', 'x')}"}
    response = httpx.post(f"{api_url}/api/v1/deployments/{deployment['id']}/webhook-secret", headers=other)
    assert_error(response, 404, "not_found")
    assert github(api_url, deployment).status_code == 202  # the secret is unchanged


@pytest.mark.parametrize(
    "body,headers,status,code",
    [
        (b"{not json", {}, 400, "bad_request"),
        (b"\xff\xfe", {}, 400, "bad_request"),
        (b"[1, 2]", {}, 422, "validation_error"),
        (b"", {}, 400, "bad_request"),
        (json.dumps({"ref": 7, "after": SHA}).encode(), {}, 422, "validation_error"),
        (json.dumps({"ref": "refs/heads/main", "after": "abc"}).encode(), {}, 422, "validation_error"),
        (json.dumps({"ref": "refs/heads/main"}).encode(), {}, 422, "validation_error"),
        (json.dumps(push_payload()).encode(), {"X-GitHub-Event": ""}, 400, "bad_request"),
        (
            b"payload=%7B%7D",
            {"Content-Type": "application/x-www-form-urlencoded"},
            415,
            "unsupported_media_type",
        ),
        (json.dumps(push_payload()).encode(), {"X-GitHub-Delivery": "has space"}, 400, "bad_request"),
    ],
    ids=[
        "malformed-json",
        "not-utf8",
        "not-an-object",
        "empty",
        "ref-not-a-string",
        "after-not-a-sha",
        "no-after",
        "no-event",
        "form-encoded",
        "bad-delivery-id",
    ],
)
def test_a_signed_but_malformed_delivery_gets_a_4xx_with_the_standard_error_body(
    api_url, client, git_deployment, body, headers, status, code
):
    deployment = git_deployment()
    assert_error(github(api_url, deployment, body=body, headers=headers), status, code)
    assert builds_of(client, deployment) == []


def test_a_webhook_body_is_capped_like_any_json_body(api_url, client, git_deployment, config):
    deployment = git_deployment()
    huge = json.dumps(push_payload(padding="x" * config.max_json_bytes)).encode()
    assert_error(github(api_url, deployment, body=huge), 413, "payload_too_large")
    assert builds_of(client, deployment) == []


def test_a_webhook_push_supersedes_queued_builds_when_the_deployment_asks(api_url, client, git_deployment):
    deployment = git_deployment(supersede_queued=True)
    older = github(api_url, deployment, push_payload(after=OTHER_SHA)).json()
    newer = github(api_url, deployment).json()
    assert client.get(f"/deployments/{deployment['id']}/builds/{older['id']}").json()["status"] == "cancelled"
    assert newer["status"] == "pending" and newer["commit_sha"] == SHA


@pytest.mark.e2e
def test_a_pushed_commit_is_built_by_a_worker_from_the_real_repository_not_the_branch_tip(
    api_url, client, git_deployment, worker, config, two_commit_repo
):
    url, (first, tip) = two_commit_repo
    deployment = git_deployment(repo_url=url)
    # A push webhook naming the older commit (a delayed delivery, say) builds that commit.
    response = github(api_url, deployment, push_payload(after=first))
    assert response.status_code == 202, response.text
    build = wait_for_status(client, response.json())
    assert build["status"] == "success", logs(client, build)
    assert build["commit_sha"] == first and first != tip
    assert build["image_tag"] == f"{config.registry}/{deployment['subdomain']}:{first[:8]}"
    assert "version one" in logs(client, build)
