"""A log WebSocket the API refuses at the handshake is answered, by the real server, with the
HTTP error it is and the standard body (not the bare 403 every refused ASGI handshake gets)."""

import json

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from common.records import keys
from common.records.call import SyncRunner
from common.tenant_limits import set_limits

ZERO = "00000000-0000-0000-0000-000000000000"


def refused(api_url: str, token: str | None) -> tuple[int, dict, dict]:
    url = api_url.replace("http", "ws", 1) + f"/api/v1/deployments/{ZERO}/builds/{ZERO}/logs/stream"
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    with pytest.raises(InvalidStatus) as answer, connect(url, additional_headers=headers, open_timeout=10):
        pass
    response = answer.value.response
    return response.status_code, response.headers, json.loads(response.body)


def test_a_log_websocket_without_a_token_is_answered_401_with_the_standard_body(api_url):
    status, _, body = refused(api_url, None)
    assert (status, body["error"]) == (401, "unauthorized")


def test_a_log_websocket_of_an_unknown_build_is_answered_404_with_the_standard_body(api_url, tenant_token):
    status, _, body = refused(api_url, tenant_token[1])
    assert (status, body["error"]) == (404, "not_found")


def test_a_log_websocket_past_the_tenants_streams_is_answered_429_with_retry_after(
    api_url, tenant_token, redis_client
):
    # Given a tenant allowed one log stream, which it holds
    tenant, token = tenant_token
    SyncRunner(redis_client).run(set_limits(tenant, {"max_log_streams": 1}))
    seconds, micros = redis_client.time()
    held_until_ms = seconds * 1000 + micros // 1000 + 60_000
    redis_client.zadd(keys.tenant_slots(tenant, "max_log_streams"), {"a-stream-open": held_until_ms})
    # When it opens another, Then the handshake is answered 429 with Retry-After and says why
    status, headers, body = refused(api_url, token)
    assert (status, body["error"]) == (429, "too_many_requests")
    assert "max_log_streams" in body["message"]
    assert 1 <= int(headers["Retry-After"]) <= 10
