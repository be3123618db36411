"""Every error, on every route, has the body {"error": code, "message": text}."""

import httpx
import pytest

from common.records import keys
from tests.conftest import unique_subdomain

pytestmark = pytest.mark.in_process

NIL = "00000000-0000-4000-8000-000000000000"


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == code and body["message"]
    assert "Traceback" not in response.text and "<html" not in response.text.lower()
    return body


def test_malformed_json_is_a_400(client):
    response = client.post("/deployments", content=b'{"name": ', headers={"Content-Type": "application/json"})
    assert "Malformed JSON" in assert_error(response, 400, "bad_request")["message"]


def test_deeply_nested_json_is_a_400_not_a_crash(client):
    deep = b"[" * 100_000 + b"]" * 100_000
    response = client.post("/deployments", content=deep, headers={"Content-Type": "application/json"})
    assert response.status_code in (400, 413)
    assert response.json()["error"] in ("bad_request", "payload_too_large")
    nested = b'{"a":' * 5000 + b"1" + b"}" * 5000
    assert_error(
        client.post("/deployments", content=nested, headers={"Content-Type": "application/json"}),
        400,
        "bad_request",
    )


def test_invalid_utf8_is_a_400(client):
    response = client.post(
        "/deployments", content=b'{"name": "\xff\xfe"}', headers={"Content-Type": "application/json"}
    )
    assert "UTF-8" in assert_error(response, 400, "bad_request")["message"]


def test_a_json_array_instead_of_an_object_is_a_422(client):
    assert_error(client.post("/deployments", json=[1, 2]), 422, "validation_error")


def test_a_missing_or_wrong_token_is_a_401(anonymous_client):
    assert_error(anonymous_client.get("/api/v1/deployments"), 401, "unauthorized")


@pytest.mark.parametrize(
    "path",
    [
        "/nope",
        f"/deployments/{NIL}",
        "/deployments/not-a-uuid",
        f"/deployments/{NIL}/builds/{NIL}",
        f"/deployments/{NIL}/builds/'; DROP TABLE",
    ],
)
def test_unknown_things_are_a_404(client, path):
    assert_error(client.get(path), 404, "not_found")


def test_a_bad_build_id_under_a_real_deployment_is_build_not_found(client):
    deployment = client.post(
        "/deployments", json={"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    ).json()
    for build_id in (NIL, "not-a-uuid"):
        body = assert_error(
            client.get(f"/deployments/{deployment['id']}/builds/{build_id}"), 404, "not_found"
        )
        assert body["message"] == "Build not found"
        logs = client.get(f"/deployments/{deployment['id']}/builds/{build_id}/logs")
        assert assert_error(logs, 404, "not_found")["message"] == "Build not found"


def test_a_wrong_method_is_a_405(client):
    assert_error(client.put("/deployments"), 405, "method_not_allowed")
    assert_error(client.get(f"/deployments/{NIL}/deploy"), 405, "method_not_allowed")


def test_a_conflict_is_a_409(client):
    body = {"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    client.post("/deployments", json=body)
    assert_error(client.post("/deployments", json=body), 409, "conflict")


def test_an_oversized_json_body_is_a_413(client, config):
    big = b'{"name": "' + b"x" * (config.max_json_bytes + 10) + b'"}'
    assert_error(
        client.post("/deployments", content=big, headers={"Content-Type": "application/json"}),
        413,
        "payload_too_large",
    )


def test_a_body_that_is_not_json_is_a_415(client):
    response = client.post(
        "/deployments", content=b"name=a", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert_error(response, 415, "unsupported_media_type")


def test_a_field_of_the_wrong_type_is_a_422(client):
    assert_error(client.post("/deployments", json={"name": ["a"], "subdomain": "x"}), 422, "validation_error")


def test_an_internal_error_is_a_bare_500_without_a_trace(client, redis_client, tenant_token):
    deployment = client.post(
        "/deployments", json={"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    ).json()
    # A whole record damaged outside the API: its status is not one the API knows.
    build_id = "11111111-2222-4333-8444-555555555555"
    record = {"id": build_id, "deployment_id": deployment["id"], "tenant": tenant_token[0], "number": "1"}
    record |= {"subdomain": "x", "source_type": "archive", "dockerfile_path": "Dockerfile", "created_at": "t"}
    redis_client.hset(keys.build(build_id), mapping={**record, "status": "exploded"})
    try:
        response = client.post(f"/deployments/{deployment['id']}/builds/{build_id}/cancel")
        body = assert_error(response, 500, "internal_error")
        assert "exploded" not in body["message"]
    finally:
        redis_client.delete(keys.build(build_id))
