"""Build secrets through the API: set and rotate (PUT), list names (GET), delete; values
write-only, encrypted at rest with the farm's key, refused (503) on a farm without one, and
gone with their deployment."""

import logging

import httpx
import pytest

from api.app import create_app
from common.build_secrets import SecretCipher
from common.config import Config, ConfigError
from common.contract import MAX_SECRETS
from common.records import keys
from common.tokens import create_token
from tests.conftest import IN_PROCESS_URL, api_env
from tests.farm import create_archive_deployment
from tests.in_process import serve_in_process

pytestmark = pytest.mark.in_process

VALUE = "s3cr3t-value-8f2a91"


def secrets_path(deployment: dict, name: str | None = None) -> str:
    return f"/deployments/{deployment['id']}/secrets" + (f"/{name}" if name else "")


def put(client, deployment: dict, name: str, value: str = VALUE) -> httpx.Response:
    return client.put(secrets_path(deployment, name), json={"value": value})


def names(client, deployment: dict) -> list[str]:
    response = client.get(secrets_path(deployment))
    assert response.status_code == 200, response.text
    return response.json()["names"]


def test_secrets_are_set_listed_by_name_and_deleted(client):
    deployment = create_archive_deployment(client)
    assert names(client, deployment) == []
    for name in ("npm_token", "AWS.key-2", "A"):
        response = put(client, deployment, name)
        assert response.status_code == 204 and response.content == b""
    assert names(client, deployment) == ["A", "AWS.key-2", "npm_token"]
    deleted = client.delete(secrets_path(deployment, "AWS.key-2"))
    assert deleted.status_code == 204
    assert names(client, deployment) == ["A", "npm_token"]
    again = client.delete(secrets_path(deployment, "AWS.key-2"))
    assert again.status_code == 404 and again.json() == {"error": "not_found", "message": "Secret not found"}


def test_a_secret_is_stored_encrypted_and_a_put_again_rotates_it(client, redis_client, config):
    deployment = create_archive_deployment(client)
    cipher = SecretCipher(config.secrets_key)
    assert put(client, deployment, "token", "first-value").status_code == 204
    stored = redis_client.hget(keys.deployment_secrets(deployment["id"]), "token")
    assert b"first-value" not in stored
    assert cipher.decrypt(stored.decode()) == "first-value"
    # When it is set again, the new value replaces the old one under the same name
    assert put(client, deployment, "token", "second-value").status_code == 204
    rotated = redis_client.hget(keys.deployment_secrets(deployment["id"]), "token").decode()
    assert cipher.decrypt(rotated) == "second-value"
    assert names(client, deployment) == ["token"]


def test_a_secrets_value_is_in_no_response_and_no_log_line(client, redis_client, caplog):
    deployment = create_archive_deployment(client)
    caplog.set_level(logging.DEBUG)
    responses = [
        put(client, deployment, "token"),
        client.put(secrets_path(deployment, "token"), json={"value": VALUE, "extra": VALUE}),
        client.put(secrets_path(deployment, "bad name"), json={"value": VALUE}),
        client.get(secrets_path(deployment)),
        client.get(f"/deployments/{deployment['id']}"),
        client.get("/deployments"),
    ]
    assert [r.status_code for r in responses] == [204, 422, 422, 200, 200, 200]
    for response in responses:
        assert VALUE not in response.text and VALUE not in str(response.headers)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    assert not [r for r in caplog.records if VALUE in r.getMessage()]
    stored = redis_client.hgetall(keys.deployment_secrets(deployment["id"]))
    stored |= redis_client.hgetall(keys.deployment(deployment["id"]))
    assert stored and not [value for value in stored.values() if VALUE.encode() in value]


@pytest.mark.parametrize(
    "name,status",
    [("with space", 422), ("semi;colon", 422), ("é", 422), ("x" * 65, 422), ("x" * 64, 204), ("..x", 204)],
)
def test_a_secret_name_must_fit_the_pattern(client, name, status):
    deployment = create_archive_deployment(client)
    response = put(client, deployment, name)
    assert response.status_code == status, response.text
    if status == 422:
        assert response.json()["error"] == "validation_error"
        assert "letters, digits, '_', '.' or '-' (not '.' or '..'), at most 64" in response.json()["message"]
        assert client.delete(secrets_path(deployment, name)).status_code == 422


@pytest.mark.parametrize(
    "body,status,fragment",
    [
        ({"value": ""}, 422, "Field 'value'"),
        ({"value": 5}, 422, "must be of type string"),
        ({}, 422, "Field 'value' is required"),
        ({"value": "x" * (32 * 1024 + 1)}, 422, "at most 32768 characters"),
    ],
)
def test_a_bad_secret_value_is_refused_clearly(client, body, status, fragment):
    deployment = create_archive_deployment(client)
    response = client.put(secrets_path(deployment, "token"), json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["message"]
    assert names(client, deployment) == []


def test_a_deployment_has_at_most_max_secrets_but_may_rotate_them_all(client):
    deployment = create_archive_deployment(client)
    for i in range(MAX_SECRETS):
        assert put(client, deployment, f"s{i}").status_code == 204
    refused = put(client, deployment, "one-more")
    assert refused.status_code == 409 and refused.json()["error"] == "conflict"
    assert f"at most {MAX_SECRETS} secrets" in refused.json()["message"]
    assert put(client, deployment, "s0", "rotated").status_code == 204
    assert len(names(client, deployment)) == MAX_SECRETS


def test_another_tenants_secrets_are_not_found(client, anonymous_client, redis_client):
    deployment = create_archive_deployment(client)
    assert put(client, deployment, "token").status_code == 204
    stranger = {"Authorization": f"Bearer {create_token(redis_client, 'someone-else', 'tests')}"}
    path = "/api/v1" + secrets_path(deployment)
    for response in (
        anonymous_client.get(path, headers=stranger),
        anonymous_client.put(path + "/token", json={"value": "mine"}, headers=stranger),
        anonymous_client.delete(path + "/token", headers=stranger),
    ):
        assert response.status_code == 404 and response.json()["message"] == "Deployment not found"
    assert names(client, deployment) == ["token"]


def test_deleting_a_deployment_deletes_its_secrets(client, redis_client):
    deployment = create_archive_deployment(client)
    assert put(client, deployment, "token").status_code == 204
    assert redis_client.exists(keys.deployment_secrets(deployment["id"]))
    assert client.delete(f"/deployments/{deployment['id']}").status_code == 204
    assert not redis_client.exists(keys.deployment_secrets(deployment["id"]))
    assert client.get(secrets_path(deployment)).status_code == 404


@pytest.fixture(scope="module")
def keyless_api(redis_client, s3):
    """The same API on a farm without a secrets key."""
    with serve_in_process(Config.from_env({**api_env(), "BUILDFARM_SECRETS_KEY": ""})) as transport:
        yield transport


def test_a_farm_without_a_secrets_key_refuses_secrets_rather_than_store_them_in_clear(
    keyless_api, client, tenant_token, redis_client
):
    deployment = create_archive_deployment(client)
    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    with httpx.Client(base_url=IN_PROCESS_URL + "/api/v1", headers=headers, transport=keyless_api) as keyless:
        response = put(keyless, deployment, "token")
        assert response.status_code == 503
        assert response.json() == {
            "error": "service_unavailable",
            "message": "Secrets are not configured on this farm (its operator sets BUILDFARM_SECRETS_KEY)",
        }
        assert not redis_client.exists(keys.deployment_secrets(deployment["id"]))
        assert names(keyless, deployment) == []


def test_a_malformed_secrets_key_stops_the_api_with_a_clear_message():
    with pytest.raises(ConfigError, match="BUILDFARM_SECRETS_KEY is not a Fernet key"):
        create_app(Config.from_env({**api_env(), "BUILDFARM_SECRETS_KEY": "not-a-key"}))
