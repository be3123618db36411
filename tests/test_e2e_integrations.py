"""Integrations end to end (docs/INTEGRATIONS.md): real builds by a real worker report their
commit status to a fake GitHub and a fake GitLab API, and send signed notifications to
receivers, all real HTTP servers this module starts on loopback (the test farm opens loopback:
BUILDFARM_OUTBOUND_ALLOW). The fakes check the token and record what they get; the receivers
check each signature with the verification example of docs/INTEGRATIONS.md."""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from common.records import keys
from tests.conftest import ROOT, free_port, unique_subdomain, wait_until
from tests.farm import (
    MetricsWorker,
    archive_deployment,
    context_archive,
    deploy,
    dockerfile,
    logs,
    value,
    wait_for_status,
)
from tests.test_e2e_cli import assert_clean_failure, run_cli
from tests.test_e2e_webhooks import github, push_payload

pytestmark = pytest.mark.e2e

PUBLIC_URL = "https://farm.example.test"
TOKEN = "ghp_t0ken-for-tests"


def _verify_from_docs():
    """The verification function of docs/INTEGRATIONS.md, as a reader would copy it."""
    text = (ROOT / "docs/INTEGRATIONS.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len([line for line in code.splitlines() if line.strip()]) <= 10
    scope: dict = {}
    exec(code, scope)
    return scope["verify"]


verify = _verify_from_docs()


class Recorder:
    """An HTTP server on loopback that records every POST (path, headers, JSON body) and answers
    with `answer(request)`'s status (200 by default)."""

    def __init__(self, answer=lambda request: 200) -> None:
        self.requests: list[dict] = []
        self.answer = answer
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = {
                    "path": self.path,
                    "headers": dict(self.headers),
                    "raw": body,
                    "json": json.loads(body),
                }
                status = recorder.answer(request)
                recorder.requests.append(request)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"answer": "recorded"}')

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder():
    made = []

    def make(answer=lambda request: 200) -> Recorder:
        made.append(Recorder(answer))
        return made[-1]

    yield make
    for server in made:
        server.close()


@pytest.fixture(scope="module")
def integrations_worker(redis_client, s3, docker_client, logs_dir):
    """A worker that links to the dashboard at PUBLIC_URL, retries integrations quickly and
    serves its metrics."""
    worker = MetricsWorker(logs_dir, BUILDFARM_PUBLIC_URL=PUBLIC_URL, BUILDFARM_INTEGRATION_BACKOFF_MS="100")
    yield worker
    worker.stop()


def requests_counted(worker: MetricsWorker, before: dict, kind: str, outcome: str) -> float:
    name = "buildfarm_integration_requests_total"
    return value(worker.scrape(), name, kind=kind, outcome=outcome) - value(
        before, name, kind=kind, outcome=outcome
    )


def provider_api(recorder, provider: str) -> Recorder:
    """A fake GitHub or GitLab API: 201 for a status sent with the token, 401 otherwise."""
    if provider == "github":
        return recorder(lambda r: 201 if r["headers"].get("Authorization") == f"Bearer {TOKEN}" else 401)
    return recorder(lambda r: 201 if r["headers"].get("PRIVATE-TOKEN") == TOKEN else 401)


def reported(api: Recorder, count: int) -> list[dict]:
    wait_until(lambda: len(api.requests) >= count, 30, what=f"{count} commit statuses")
    time.sleep(0.5)  # nothing more comes
    return api.requests


@pytest.mark.parametrize(
    ("provider", "dockerfile_path", "states"),
    [
        ("github", "Dockerfile", ["pending", "pending", "success"]),
        ("gitlab", "Dockerfile", ["pending", "running", "success"]),
        ("github", "missing.Dockerfile", ["pending", "pending", "failure"]),
        ("gitlab", "missing.Dockerfile", ["pending", "running", "failed"]),
    ],
)
def test_a_pushed_commit_reports_pending_then_its_outcome_with_its_sha_context_and_build_page(
    api_url,
    client,
    redis_client,
    integrations_worker,
    two_commit_repo,
    recorder,
    provider,
    dockerfile_path,
    states,
):
    # Given a git deployment reporting to the provider's (fake) API
    url, (first, _) = two_commit_repo
    api = provider_api(recorder, provider)
    created = client.post(
        "/deployments",
        json={
            "name": "status",
            "subdomain": unique_subdomain("cs"),
            "repo_url": url,
            "dockerfile_path": dockerfile_path,
        },
    )
    deployment = created.json()
    api_path = "/api/v3" if provider == "github" else "/api/v4"
    response = client.put(
        f"/deployments/{deployment['id']}/commit-status",
        json={"provider": provider, "token": TOKEN, "api_url": api.url + api_path, "repository": "acme/app"},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"provider": provider, "api_url": api.url + api_path, "repository": "acme/app"}
    # The token is never shown, and not kept in plain text.
    assert TOKEN not in client.get(f"/deployments/{deployment['id']}/commit-status").text
    assert TOKEN.encode() not in redis_client.get(keys.deployment_commit_status(deployment["id"]))

    # When a push webhook builds a commit
    before = integrations_worker.scrape()
    pushed = github(api_url, deployment, push_payload(after=first))
    assert pushed.status_code == 202, pushed.text
    build = wait_for_status(client, pushed.json())
    assert build["status"] == ("success" if dockerfile_path == "Dockerfile" else "failed"), logs(
        client, build
    )

    # Then the provider got the commit's states in order, each for that commit, context and page
    requests = reported(api, len(states))
    assert [r["json"]["state"] for r in requests] == states
    if provider == "github":
        assert {r["path"] for r in requests} == {f"/api/v3/repos/acme/app/statuses/{first}"}
        assert {r["json"]["context"] for r in requests} == {f"buildfarm/{deployment['subdomain']}"}
    else:
        assert {r["path"] for r in requests} == {f"/api/v4/projects/acme%2Fapp/statuses/{first}"}
        assert {r["json"]["name"] for r in requests} == {f"buildfarm/{deployment['subdomain']}"}
    page = f"{PUBLIC_URL}/#/deployments/{deployment['id']}/builds/{build['id']}"
    assert {r["json"]["target_url"] for r in requests} == {page}
    last = requests[-1]["json"]["description"]
    assert (
        re.fullmatch(r"Built in \d+ s", last)
        if build["status"] == "success"
        else last == build["error"][:140]
    )
    # ...each a line of the worker's log and a count of its metric
    assert integrations_worker.log.read_text().count(f"build {build['id']}: commit status") == len(states)
    assert requests_counted(integrations_worker, before, "commit_status", "delivered") == len(states)
    assert requests_counted(integrations_worker, before, "commit_status", "failed") == 0


def test_a_receiver_failing_twice_gets_each_event_again_with_the_same_id_until_it_answers(
    client, integrations_worker, recorder
):
    # Given a receiver that answers 500 to the first two tries of each event, a Slack target,
    # and a target nothing listens at
    tries: dict[str, int] = {}

    def flaky(request: dict) -> int:
        event_id = request["headers"]["X-Buildfarm-Event-Id"]
        tries[event_id] = tries.get(event_id, 0) + 1
        return 500 if tries[event_id] <= 2 else 200

    receiver, slack = recorder(flaky), recorder()
    deployment = archive_deployment(client, context_archive(dockerfile("echo notified")))
    path = f"/deployments/{deployment['id']}/notifications"
    events = ["build.started", "build.succeeded"]
    targets = [
        client.post(path, json={"url": receiver.url + "/hook", "events": events}),
        client.post(path, json={"url": slack.url, "format": "slack"}),
        client.post(path, json={"url": f"http://127.0.0.1:{free_port()}/gone"}),
    ]
    assert [t.status_code for t in targets] == [201, 201, 201], [t.text for t in targets]
    flaky_target, slack_target, gone_target = (t.json() for t in targets)
    assert flaky_target["events"] == events and flaky_target["secret"].startswith("whsec_")
    listed = client.get(path).json()
    assert [t["id"] for t in listed] == [t["id"] for t in (flaky_target, slack_target, gone_target)]
    assert all("secret" not in t for t in listed)

    # When a build runs and succeeds
    before = integrations_worker.scrape()
    started = time.monotonic()
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "success", logs(client, build)

    # Then each event reached the receiver three times, with one id and a valid signature each
    wait_until(lambda: len(receiver.requests) >= 6, 30, what="the receiver's third tries")
    healed_s = time.monotonic() - started
    by_event = {}
    for request in receiver.requests:
        headers = request["headers"]
        assert verify(flaky_target["secret"], headers["X-Buildfarm-Signature"], request["raw"])
        assert not verify("whsec_other", headers["X-Buildfarm-Signature"], request["raw"])
        assert request["json"]["id"] == headers["X-Buildfarm-Event-Id"]
        by_event.setdefault(request["json"]["type"], set()).add(headers["X-Buildfarm-Event-Id"])
    assert {event: len(ids) for event, ids in by_event.items()} == {"build.started": 1, "build.succeeded": 1}
    assert len(receiver.requests) == 6
    succeeded = receiver.requests[-1]["json"]
    assert succeeded["build"]["id"] == build["id"] and succeeded["build"]["status"] == "success"
    assert succeeded["deployment"]["subdomain"] == deployment["subdomain"]
    assert succeeded["url"] == f"{PUBLIC_URL}/#/deployments/{deployment['id']}/builds/{build['id']}"

    # The attempts are readable, newest first
    def deliveries(target: dict) -> list[dict]:
        return client.get(f"{path}/{target['id']}/deliveries").json()

    wait_until(lambda: len(deliveries(flaky_target)) == 6, 10, what="the deliveries' records")
    for event in events:
        attempts = [d for d in deliveries(flaky_target) if d["event"] == event]
        assert [(d["attempt"], d["status_code"], d["delivered"]) for d in attempts] == [
            (3, 200, True),
            (2, 500, False),
            (1, 500, False),
        ]
        assert {d["build_id"] for d in attempts} == {build["id"]}

    # The Slack target got one message, the unreachable one only failures; the build was unaffected
    wait_until(lambda: slack.requests, 10, what="the Slack message")
    [message] = slack.requests
    assert set(message["json"]) == {"text"} and f"#{build['number']}" in message["json"]["text"]
    assert "succeeded" in message["json"]["text"] and verify(
        slack_target["secret"], message["headers"]["X-Buildfarm-Signature"], message["raw"]
    )
    gone = deliveries(gone_target)
    assert gone and all(d["status_code"] is None and not d["delivered"] for d in gone)
    assert gone[0]["answer"].startswith("No answer: ConnectError")
    assert requests_counted(integrations_worker, before, "notification", "delivered") == 3
    assert requests_counted(integrations_worker, before, "notification", "failed") >= 4 + len(gone)
    print(f"flaky receiver healed {healed_s:.1f} s after the deploy, 3 attempts per event")

    # Removing a target removes its deliveries
    assert client.delete(f"{path}/{gone_target['id']}").status_code == 204
    assert client.get(f"{path}/{gone_target['id']}/deliveries").status_code == 404


def test_builds_cancelled_superseded_pending_or_running_are_each_notified_once(
    client, integrations_worker, recorder
):
    # Given a deployment whose first build runs while a second waits behind it
    receiver = recorder()
    deployment = archive_deployment(client, context_archive(dockerfile("echo start && sleep 60")))
    path = f"/deployments/{deployment['id']}"
    target = client.post(f"{path}/notifications", json={"url": receiver.url, "events": ["build.cancelled"]})
    running = deploy(client, deployment)
    wait_for_status(client, running, statuses=("building",))
    superseded = deploy(client, deployment)

    # When a third deploy supersedes the second, the API cancels the third while it is pending,
    # and the running one is cancelled by its worker
    assert client.patch(path, json={"supersede_queued": True}).status_code == 200
    newest = deploy(client, deployment)
    assert client.post(f"{path}/builds/{newest['id']}/cancel").status_code == 200
    assert client.post(f"{path}/builds/{running['id']}/cancel").status_code == 202
    assert wait_for_status(client, running)["status"] == "cancelled"

    # Then the receiver got one build.cancelled for each, signed, and nothing else
    wait_until(lambda: len(receiver.requests) >= 3, 30, what="three cancellations")
    time.sleep(0.5)
    events = [r["json"] for r in receiver.requests]
    assert sorted(e["build"]["id"] for e in events) == sorted(b["id"] for b in (running, superseded, newest))
    assert {e["type"] for e in events} == {"build.cancelled"}
    assert {e["build"]["error_kind"] for e in events} == {"cancelled"}
    secret = target.json()["secret"]
    assert all(verify(secret, r["headers"]["X-Buildfarm-Signature"], r["raw"]) for r in receiver.requests)


def test_integrations_refuse_bad_input_with_clear_errors_and_never_show_secrets(client, redis_client):
    archive = archive_deployment(client, context_archive(dockerfile("true")))
    git = client.post(
        "/deployments",
        json={"name": "g", "subdomain": unique_subdomain("cs"), "repo_url": "http://127.0.0.1:9/x"},
    ).json()
    notifications = f"/deployments/{archive['id']}/notifications"

    def error(response: httpx.Response, status: int, message: str) -> None:
        assert response.status_code == status, response.text
        assert response.json()["message"] == message, response.text

    error(
        client.post(notifications, json={"url": "http://169.254.169.254/latest"}),
        422,
        "Field 'url' is refused: the host '169.254.169.254' is a link-local address: the farm does not "
        "connect there (an operator opens address ranges with BUILDFARM_OUTBOUND_ALLOW)",
    )
    error(
        client.post(notifications, json={"url": "ftp://example.com/x"}),
        422,
        "Field 'url' must be an http(s) URL without credentials (user:password@), spaces or control "
        "characters",
    )
    error(
        client.post(notifications, json={"url": "https://example.com", "events": ["build.exploded"]}),
        422,
        "Each item of 'events' must be 'build.started' or 'build.succeeded' or 'build.failed' or "
        "'build.cancelled'",
    )
    error(client.delete(f"{notifications}/not-an-id"), 404, "Notification target not found")
    error(client.get(f"{notifications}/{archive['id']}/deliveries"), 404, "Notification target not found")
    for _ in range(10):
        assert client.post(notifications, json={"url": "https://example.com/hook"}).status_code == 201
    error(
        client.post(notifications, json={"url": "https://example.com/hook"}),
        409,
        "A deployment has at most 10 notification targets: delete one first",
    )

    status = f"/deployments/{git['id']}/commit-status"
    error(
        client.put(f"/deployments/{archive['id']}/commit-status", json={"provider": "github", "token": "t"}),
        409,
        "Only git deployments have commits to report a status on",
    )
    error(
        client.put(status, json={"provider": "github", "token": "t"}),
        422,
        "Field 'repository' is required: the deployment's repo_url names no owner/name",
    )
    error(
        client.put(status, json={"provider": "bitbucket", "token": "t", "repository": "a/b"}),
        422,
        "Field 'provider' must be 'github' or 'gitlab'",
    )
    error(
        client.put(status, json={"provider": "github", "token": "has space", "repository": "a/b"}),
        422,
        "Field 'token' must be printable ASCII without spaces",
    )
    error(
        client.put(status, json={"provider": "gitlab", "token": "t", "repository": "a/../b"}),
        422,
        "Field 'repository' must be 'owner/name' (GitHub), a project path 'group/…/name' or a numeric "
        "project id (GitLab)",
    )
    error(client.get(status), 404, "This deployment reports no commit status")
    error(client.delete(status), 404, "This deployment reports no commit status")
    put = client.put(status, json={"provider": "gitlab", "token": "secret-token", "repository": "42"})
    assert put.json() == {"provider": "gitlab", "api_url": "https://gitlab.com/api/v4", "repository": "42"}
    assert "secret-token" not in put.text
    assert client.delete(status).status_code == 204

    # Deleting a deployment deletes its integrations
    client.put(status, json={"provider": "github", "token": "t", "repository": "a/b"})
    assert client.delete(f"/deployments/{git['id']}").status_code == 204
    assert not redis_client.exists(keys.deployment_commit_status(git["id"]))
    assert client.delete(f"/deployments/{archive['id']}").status_code == 204
    assert not redis_client.exists(keys.deployment_notifications(archive["id"]))


def test_the_cli_adds_lists_and_removes_notifications_and_deploys_with_a_status_token_from_stdin(
    api_url, client, tenant_token, integrations_worker, two_commit_repo, recorder
):
    token = tenant_token[1]
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    added = run_cli(
        api_url,
        token,
        "notify",
        "add",
        deployment["subdomain"],
        "https://example.com/hook",
        "--event",
        "build.failed",
    )
    assert added.returncode == 0, added.stderr
    [secret] = added.stdout.splitlines()
    assert secret.startswith("whsec_") and secret not in added.stderr
    [target] = client.get(f"/deployments/{deployment['id']}/notifications").json()
    assert target["events"] == ["build.failed"] and target["id"] in added.stderr
    listed = run_cli(api_url, token, "notify", "list", deployment["id"])
    assert listed.stdout.split() == [target["id"], "json", "build.failed", "https://example.com/hook"]
    assert run_cli(api_url, token, "notify", "rm", deployment["subdomain"], target["id"]).returncode == 0
    assert client.get(f"/deployments/{deployment['id']}/notifications").json() == []
    again = run_cli(api_url, token, "notify", "rm", deployment["subdomain"], target["id"])
    assert_clean_failure(again, 3, "Notification target not found [HTTP 404 not_found]")

    # A git deploy with a status token (on stdin) reports its build to the provider
    url, (_, tip) = two_commit_repo
    gitlab = provider_api(recorder, "gitlab")
    subdomain = unique_subdomain("cli")
    deployed = run_cli(
        api_url,
        token,
        "deploy",
        url,
        "--subdomain",
        subdomain,
        "--follow",
        "--status-token",
        "-",
        "--status-provider",
        "gitlab",
        "--status-api-url",
        gitlab.url + "/api/v4",
        "--status-repository",
        "acme/app",
        stdin=TOKEN + "\n",
    )
    assert deployed.returncode == 0, deployed.stderr
    assert f"Builds of {subdomain} report their commit status to acme/app on gitlab" in deployed.stderr
    assert TOKEN not in deployed.stdout + deployed.stderr
    # (The branch tip's commit is known once the worker cloned it: "running" may come too late.)
    wait_until(
        lambda: gitlab.requests and gitlab.requests[-1]["json"]["state"] == "success", 30, what="success"
    )
    requests = gitlab.requests
    assert [r["json"]["state"] for r in requests] in (["success"], ["running", "success"])
    assert requests[-1]["path"] == f"/api/v4/projects/acme%2Fapp/statuses/{tip}"
