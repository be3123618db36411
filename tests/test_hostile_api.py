"""A hostile tenant against the API and the worker's git step (issue 13, item 5 and the timeout
cap of item 4): paths spelled to slip past authentication, a build timeout above the operator's,
git URLs to loopback and link-local addresses, credentials in a URL, /metrics without its token.

Traffic stays on loopback: the link-local and loopback URLs are refused by the API without a
connection (a literal is never looked up, `localhost` is read from /etc/hosts), and the worker's
refusal happens before git starts.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import falcon
import httpx
import pytest

from common.config import Config
from common.records import keys
from tests.conftest import IN_PROCESS_URL, api_env, free_port, start_worker, unique_subdomain, wait_until
from tests.farm import (
    archive_deployment,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
)
from tests.in_process import serve_in_process

ZERO = "00000000-0000-4000-8000-000000000000"
METRICS_TOKEN = "metrics-token-of-the-operator"


def raw_request(api_url: str, method: str, path: str, token: str | None = None):
    """`path` sent exactly as written (httpx would normalise `//api` into a host): status, headers,
    JSON body."""
    address = urlsplit(api_url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, response.headers, json.loads(response.read())
    finally:
        connection.close()


# Spellings the router takes to a resource that needs a token.
ROUTED = [
    "//api/v1/deployments",
    "///api/v1/deployments",
    "/api/v1/deployments/",
    "/api/v1/deployments//",
    "/api/v1%2Fdeployments",
    "/api%2Fv1%2Fdeployments",
    "/api/v1/%64eployments",
    "/api/v1/deployments?x=1",
    f"/api/v1/deployments%2F{ZERO}",
    f"//api/v1/deployments/{ZERO}/builds",
    f"//api/v1/deployments/{ZERO}/builds/{ZERO}/logs",
]
# Spellings that reach no resource at all.
UNROUTED = [
    "/api/v1//deployments",
    "/API/v1/deployments",
    "/api/V1/deployments",
    "/api/v1/Deployments",
    "/api/v1/./deployments",
    "/api/v1/deployments;x",
]


@pytest.mark.parametrize("method", ["GET", "POST", "DELETE"])
@pytest.mark.parametrize("path", ROUTED)
def test_any_spelling_of_a_path_that_reaches_a_resource_needs_a_token(api_url, path, method):
    status, headers, body = raw_request(api_url, method, path)
    assert status == 401, (path, body)
    assert body["error"] == "unauthorized" and "bearer token" in body["message"]
    assert headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", UNROUTED)
def test_a_spelling_that_reaches_no_resource_is_not_found(api_url, path):
    status, _, body = raw_request(api_url, "GET", path)
    assert (status, body["error"]) == (404, "not_found"), path


def test_a_doubled_slash_with_a_token_reaches_the_same_resource_as_the_plain_path(
    api_url, client, tenant_token
):
    # Given a deployment of this tenant
    archive = {"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    created = client.post("/deployments", json=archive)
    # When it is listed through `//api/v1/deployments`, Then that is the tenant's own list
    status, _, body = raw_request(api_url, "GET", "//api/v1/deployments", tenant_token[1])
    assert status == 200 and [d["id"] for d in body] == [created.json()["id"]]


LOG_STREAM = f"/api/v1/deployments/{ZERO}/builds/{ZERO}/logs/stream"


@pytest.mark.parametrize("path", ["/" + LOG_STREAM, LOG_STREAM + "/"])
def test_a_websocket_to_any_spelling_of_a_log_stream_needs_a_token(in_process_api, path):
    # Falcon closes a refused handshake with 3000 + the HTTP status (a server then answers 403
    # to the handshake whatever the reason, so the app's own verdict is read here, in process).
    async def close_code() -> int:
        try:
            async with in_process_api.conductor.simulate_ws(path) as ws:
                return ws.close_code
        except falcon.errors.WebSocketDisconnected as e:
            return e.code

    assert in_process_api.runner.run(close_code()) == 3401


# The build timeout


@pytest.mark.in_process
def test_a_build_timeout_above_the_farms_maximum_is_refused_naming_the_maximum(client):
    maximum = Config.from_env(api_env()).build_timeout_s
    # When a deployment asks for a day
    day = {"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    day["build_timeout_s"] = 24 * 3600
    refused = client.post("/deployments", json=day)
    # Then it is refused with the maximum named
    assert refused.status_code == 422
    assert refused.json() == {
        "error": "validation_error",
        "message": f"Field 'build_timeout_s' must be at most {maximum}: the farm's maximum build timeout",
    }
    # The maximum itself is accepted, and a change above it is refused and changes nothing
    created = client.post("/deployments", json={**day, "build_timeout_s": maximum})
    assert created.status_code == 201 and created.json()["build_timeout_s"] == maximum
    path = f"/deployments/{created.json()['id']}"
    patched = client.patch(path, json={"build_timeout_s": maximum + 1})
    assert patched.status_code == 422 and str(maximum) in patched.json()["message"]
    assert client.get(path).json()["build_timeout_s"] == maximum


def test_a_worker_cuts_a_stored_timeout_above_its_own_maximum(
    client, redis_client, s3, docker_client, logs_dir
):
    # Given a worker whose operator allows 2 s, and a deployment that asks for 10 minutes (stored
    # by an API with a higher maximum, or before the cap)
    process = start_worker(logs_dir, name="short-timeout", BUILDFARM_BUILD_TIMEOUT_S="2")
    try:
        wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
        deployment = archive_deployment(client, context_archive(dockerfile("sleep 30")), build_timeout_s=600)
        # When it is built, Then it is stopped at the worker's maximum
        build = wait_for_status(client, deploy(client, deployment), timeout=60)
        assert (build["status"], build["error"]) == ("failed", "Build timed out after 2 s")
    finally:
        process.stop()


def test_the_openapi_description_states_the_timeout_cap_and_the_git_url_rules():
    from api.openapi import SPEC

    for body in ("NewDeployment", "DeploymentUpdate"):
        timeout = json.dumps(SPEC["components"]["schemas"][body]["properties"]["build_timeout_s"])
        assert "BUILDFARM_BUILD_TIMEOUT_S" in timeout and "422" in timeout, body
    repo_url = json.dumps(SPEC["components"]["schemas"]["NewDeployment"]["properties"]["repo_url"])
    assert "credentials" in repo_url and "link-local" in repo_url and "BUILDFARM_OUTBOUND_ALLOW" in repo_url


# Git URLs: the outbound address rule at create (an API without BUILDFARM_OUTBOUND_ALLOW)


@pytest.fixture(scope="module")
def default_rule_api(redis_client, s3):
    """An API in this process with the farm's default outbound rule (the test farm opens loopback)."""
    with serve_in_process(Config.from_env({**api_env(), "BUILDFARM_OUTBOUND_ALLOW": ""})) as transport:
        yield transport


@pytest.fixture
def default_rule_client(default_rule_api, tenant_token):
    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    with httpx.Client(base_url=IN_PROCESS_URL + "/api/v1", headers=headers, transport=default_rule_api) as c:
        yield c


@pytest.mark.parametrize(
    "url,kind",
    [
        ("http://127.0.0.1:9191/metrics.git", "'127.0.0.1' is a loopback address"),
        ("http://127.1.2.3/r.git", "'127.1.2.3' is a loopback address"),
        ("https://[::1]/r.git", "'::1' is a loopback address"),
        ("https://localhost/r.git", "'localhost' resolves to 127.0.0.1, a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "'169.254.169.254' is a link-local address"),
        ("http://[fe80::1]/r.git", "'fe80::1' is a link-local address"),
        ("http://[::ffff:169.254.169.254]/r.git", "a link-local address"),
        ("http://0.0.0.0:6379/r.git", "'0.0.0.0' is an unspecified address"),
        ("http://10.0.0.1/r.git", "'10.0.0.1' is a private address"),
        ("http://2130706433/r.git", "'2130706433' is not a DNS name or an IP address"),
    ],
)
def test_a_git_url_to_loopback_link_local_or_private_addresses_is_refused_at_create(
    default_rule_client, url, kind
):
    response = default_rule_client.post(
        "/deployments", json={"name": "scan", "subdomain": unique_subdomain(), "repo_url": url}
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["error"] == "validation_error"
    assert body["message"].startswith("Field 'repo_url' is refused: the host") and kind in body["message"]
    assert "BUILDFARM_OUTBOUND_ALLOW" in body["message"] or "DNS name" in body["message"]


@pytest.mark.in_process
def test_a_loopback_git_url_is_accepted_where_the_operator_opened_loopback(client):
    response = client.post(
        "/deployments",
        json={"name": "a", "subdomain": unique_subdomain(), "repo_url": "http://127.0.0.1:9/r.git"},
    )
    assert response.status_code == 201


@pytest.mark.in_process
@pytest.mark.parametrize(
    "url",
    ["https://user:token@127.0.0.1/r.git", "https://ghp_token@127.0.0.1/r.git", "http://u:p@[::1]:80/r"],
)
def test_credentials_in_a_repo_url_are_refused(client, url):
    body = {"name": "a", "subdomain": unique_subdomain(), "repo_url": url}
    response = client.post("/deployments", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith("Field 'repo_url' must be a URL without credentials")
    assert "token" not in response.json()["message"]


@pytest.mark.in_process
def test_an_unreadable_url_is_the_clients_mistake_not_an_internal_error(client):
    response = client.post(
        "/deployments",
        json={"name": "a", "subdomain": unique_subdomain(), "repo_url": "http://[not-v6]/r.git"},
    )
    assert (response.status_code, response.json()["error"]) == (422, "validation_error")


# At the worker: DNS may answer otherwise than at create, and old records may hold anything


@pytest.fixture
def default_rule_worker(redis_client, s3, docker_client, logs_dir):
    """A worker with the farm's default outbound rule: it refuses loopback git servers."""
    process = start_worker(logs_dir, name="default-rule", BUILDFARM_OUTBOUND_ALLOW="")
    wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
    yield process
    process.stop()


def test_the_worker_refuses_a_git_host_the_api_accepted_once_the_rule_says_no(
    client, default_rule_worker, two_commit_repo
):
    # Given a deployment the API accepted (the test farm's API opens loopback) whose host the
    # worker's rule refuses: the worker's answer is the one that counts
    url, _ = two_commit_repo
    body = {"name": "g", "subdomain": unique_subdomain(), "repo_url": url}
    created = client.post("/deployments", json=body)
    assert created.status_code == 201
    # When it is built
    build = wait_for_status(client, deploy(client, created.json()))
    # Then the build fails before git starts, saying why
    assert build["status"] == "failed"
    assert build["error"].startswith(f"Refused to clone {url}: the host '127.0.0.1' is a loopback address")
    assert "Refused to clone" in logs(client, build)


def test_credentials_stored_before_they_were_refused_are_shown_nowhere(
    client, redis_client, default_rule_worker
):
    # Given a deployment whose stored URL carries credentials (written as an older farm did)
    created = client.post(
        "/deployments",
        json={"name": "g", "subdomain": unique_subdomain(), "repo_url": "http://127.0.0.1:9/r.git"},
    ).json()
    secret_url = "https://user:s3cret-token@127.0.0.1:9/r.git"
    redis_client.hset(keys.deployment(created["id"]), "repo_url", secret_url)
    # Then GET and the list show it redacted
    shown = "https://***@127.0.0.1:9/r.git"
    assert client.get(f"/deployments/{created['id']}").json()["repo_url"] == shown
    assert [d["repo_url"] for d in client.get("/deployments").json()] == [shown]
    # And a build of it fails without the secret in its error or its log
    build = wait_for_status(client, deploy(client, created))
    assert build["status"] == "failed" and "credentials" in build["error"]
    assert "s3cret" not in build["error"] + logs(client, build)
    assert "s3cret" not in client.get(build_path(build)).text


# /metrics


@pytest.fixture(scope="module")
def guarded_metrics_api(redis_client, s3):
    """The API's root, in this process, with BUILDFARM_METRICS_TOKEN set."""
    config = Config.from_env({**api_env(), "BUILDFARM_METRICS_TOKEN": METRICS_TOKEN})
    with serve_in_process(config) as api, httpx.Client(base_url=IN_PROCESS_URL, transport=api) as client:
        yield client


@pytest.mark.parametrize("header", [None, "Bearer wrong", f"Basic {METRICS_TOKEN}", "Bearer"])
def test_the_apis_metrics_refuse_a_scrape_without_the_metrics_token(guarded_metrics_api, header):
    headers = {"Authorization": header} if header else {}
    response = guarded_metrics_api.get("/metrics", headers=headers)
    assert response.status_code == 401
    body = response.json()
    assert body["error"] == "unauthorized" and "BUILDFARM_METRICS_TOKEN" in body["message"]
    assert "buildfarm_" not in response.text


def test_the_apis_metrics_refuse_a_tenants_token(guarded_metrics_api, tenant_token):
    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    response = guarded_metrics_api.get("/metrics", headers=headers)
    assert response.status_code == 401


def test_the_apis_metrics_answer_a_scrape_with_the_metrics_token(guarded_metrics_api):
    headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    response = guarded_metrics_api.get("/metrics", headers=headers)
    assert response.status_code == 200 and "# TYPE buildfarm_http_requests_total counter" in response.text


def test_a_workers_metrics_port_wants_the_metrics_token_when_one_is_set(redis_client, s3, logs_dir):
    # Given a worker serving its metrics with a token set
    port = free_port()
    process = start_worker(
        logs_dir,
        name="guarded-metrics",
        BUILDFARM_METRICS_PORT=str(port),
        BUILDFARM_METRICS_HOST="127.0.0.1",
        BUILDFARM_METRICS_TOKEN=METRICS_TOKEN,
    )
    url = f"http://127.0.0.1:{port}/metrics"
    try:

        def answers() -> httpx.Response | None:
            assert process.alive(), process.tail()
            try:
                return httpx.get(url, timeout=2)
            except httpx.HTTPError:
                return None

        # When it is scraped without the token, or with another, Then it answers 401 and nothing else
        refused = wait_until(answers, 30, what="the worker's metrics port")
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert refused.json()["error"] == "unauthorized" and "buildfarm_" not in refused.text
        assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        # And with the token, it serves the series
        scraped = httpx.get(url, headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        assert scraped.status_code == 200 and "# TYPE buildfarm_builds_total counter" in scraped.text
    finally:
        process.stop()
