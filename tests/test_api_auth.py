"""Bearer tokens on every /api/v1 route, tenant isolation, tokens stored only as hashes."""

import pytest

from cli.main import main as buildfarm
from common.records import fields, keys
from common.tokens import token_hash
from tests.conftest import unique_subdomain

pytestmark = pytest.mark.in_process

PROTECTED = [
    ("GET", "/deployments"),
    ("POST", "/deployments"),
    ("GET", "/deployments/00000000-0000-4000-8000-000000000000"),
    ("DELETE", "/deployments/00000000-0000-4000-8000-000000000000"),
    ("POST", "/deployments/00000000-0000-4000-8000-000000000000/upload"),
    ("POST", "/deployments/00000000-0000-4000-8000-000000000000/deploy"),
    ("POST", "/deployments/00000000-0000-4000-8000-000000000000/webhook-secret"),
    ("GET", "/deployments/00000000-0000-4000-8000-000000000000/builds"),
    ("GET", "/deployments/00000000-0000-4000-8000-000000000000/builds/00000000-0000-4000-8000-000000000000"),
    (
        "GET",
        "/deployments/00000000-0000-4000-8000-000000000000/builds/00000000-0000-4000-8000-000000000000/logs",
    ),
    (
        "POST",
        "/deployments/00000000-0000-4000-8000-000000000000/builds/00000000-0000-4000-8000-000000000000/cancel",
    ),
    ("GET", "/farm"),
]


@pytest.mark.parametrize("method,path", PROTECTED)
@pytest.mark.parametrize(
    "header",
    [None, "Bearer", "Bearer wrong-token", "Basic dXNlcjpwYXNz", "bf_no_scheme"],
    ids=["missing", "empty", "wrong", "basic", "no-scheme"],
)
def test_every_api_route_refuses_a_missing_or_wrong_token(anonymous_client, method, path, header):
    headers = {"Authorization": header} if header else {}
    response = anonymous_client.request(method, f"/api/v1{path}", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    body = response.json()
    assert body["error"] == "unauthorized" and body["message"]


def test_a_deployment_is_invisible_to_another_tenant(anonymous_client, client, redis_client):
    from common.tokens import create_token

    created = client.post(
        "/deployments",
        json={"name": "a", "subdomain": unique_subdomain(), "repo_url": "http://127.0.0.1:9/a.git"},
    )
    assert created.status_code == 201
    deployment_id = created.json()["id"]
    other = {"Authorization": f"Bearer {create_token(redis_client, 'other-tenant', 'x')}"}
    base = "/api/v1/deployments"
    assert anonymous_client.get(f"{base}/{deployment_id}", headers=other).status_code == 404
    assert anonymous_client.get(f"{base}/{deployment_id}/builds", headers=other).status_code == 404
    assert anonymous_client.post(f"{base}/{deployment_id}/deploy", headers=other).status_code == 404
    assert anonymous_client.delete(f"{base}/{deployment_id}", headers=other).status_code == 404
    assert deployment_id not in [d["id"] for d in anonymous_client.get(base, headers=other).json()]
    # ...and still there for its owner.
    assert client.get(f"/deployments/{deployment_id}").status_code == 200


def test_the_cli_creates_a_token_shown_once_and_stored_only_as_a_hash(anonymous_client, redis_client, capsys):
    assert buildfarm(["token", "create", "--tenant", "acme", "--name", "ci"]) == 0
    token = capsys.readouterr().out.strip()
    stored = redis_client.hgetall(keys.token(token_hash(token)))
    assert stored[fields.TOKEN_TENANT.encode()] == b"acme" and stored[fields.TOKEN_NAME.encode()] == b"ci"
    assert token.encode() not in b"".join(
        redis_client.dump(k) or b"" for k in redis_client.keys(keys.token("*"))
    )
    ok = anonymous_client.get("/api/v1/deployments", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200
    assert buildfarm(["token", "revoke", token]) == 0
    revoked = anonymous_client.get("/api/v1/deployments", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401


def test_health_needs_no_token_and_readiness_checks_redis_and_s3(anonymous_client):
    assert anonymous_client.get("/healthz").json() == {"status": "ok"}
    ready = anonymous_client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"redis": "ok", "s3": "ok"}
