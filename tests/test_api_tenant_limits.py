"""A tenant's limits enforced by the API (api/admission.py) on real Redis and S3, and the usage it
sees (GET /usage, the API's per-tenant series): past a limit 429 with Retry-After and the standard
body, freed again when what held it ends, and changed at run time without a restart. No worker
runs here, so builds stay pending (git deployments' are cancelled at the end)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid

import falcon.errors
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.config import Config
from common.models import utc_now
from common.records import keys
from common.records.call import SyncRunner
from common.tenant_limits import farm_defaults, set_limits
from common.tokens import create_token
from tests import test_e2e_webhooks
from tests.conftest import api_env
from tests.farm import archive_deployment, build_path, context_archive, deploy, dockerfile
from tests.test_e2e_webhooks import push_payload, sign

pytestmark = pytest.mark.in_process
# Makes git deployments and cancels their builds still pending after the test.
git_deployment = test_e2e_webhooks.git_deployment


@pytest.fixture
def limit(redis_client, tenant_token):
    """Sets limits of the test's tenant, as an admin does (`buildfarm tenant set`)."""
    return lambda **values: SyncRunner(redis_client).run(set_limits(tenant_token[0], values))


def github_push(client: httpx.Client, deployment: dict) -> httpx.Response:
    body = json.dumps(push_payload()).encode()
    headers = {
        "Content-Type": "application/json",
        "X-GitHub-Event": "push",
        "X-GitHub-Delivery": str(uuid.uuid4()),
        "X-Hub-Signature-256": sign(deployment["webhook_secret"], body),
    }
    return client.post(f"/webhooks/github/{deployment['id']}", content=body, headers=headers)


def assert_too_many(response: httpx.Response, limit_name: str, most_s: int) -> int:
    """A 429 in the standard body naming the limit, with a Retry-After of 1 to `most_s` s."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"error", "message"} and body["error"] == "too_many_requests"
    assert limit_name in body["message"]
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= most_s
    return retry_after


def expire_slots_soon(redis_client, tenant: str, kind: str, in_ms: int = 300) -> None:
    """Time passing, compressed: every slot the tenant holds of `kind` expires in `in_ms`."""
    key = keys.tenant_slots(tenant, kind)
    now_s, now_us = redis_client.time()
    expiry = now_s * 1000 + now_us // 1000 + in_ms
    redis_client.zadd(key, dict.fromkeys(redis_client.zrange(key, 0, -1), expiry), xx=True)
    time.sleep(in_ms / 1000 + 0.1)


def test_deploy_requests_past_the_tenants_rate_get_429_until_the_minute_moves_on(
    client, tenant_token, limit, redis_client, git_deployment
):
    # Given a tenant allowed two deploy requests a minute
    limit(deploys_per_minute=2)
    deployment = git_deployment()
    assert client.post(f"/deployments/{deployment['id']}/deploy").status_code == 202
    pushed = github_push(client, deployment)
    assert pushed.status_code == 202, pushed.text
    # Then a third request, whatever its route (deploy, push webhook, retry), gets 429
    assert_too_many(client.post(f"/deployments/{deployment['id']}/deploy"), "deploys_per_minute", 60)
    assert_too_many(github_push(client, deployment), "deploys_per_minute", 60)
    assert_too_many(client.post(build_path(pushed.json()) + "/retry"), "deploys_per_minute", 60)
    assert len(client.get(f"/deployments/{deployment['id']}/builds").json()) == 2
    # When an admin raises the limit, the next request is let in at once (no restart)
    limit(deploys_per_minute=3)
    assert client.post(build_path(pushed.json()) + "/retry").status_code == 202
    assert_too_many(client.post(f"/deployments/{deployment['id']}/deploy"), "deploys_per_minute", 60)
    # And when the minute of those requests has passed, requests are let in again
    expire_slots_soon(redis_client, tenant_token[0], "deploys_per_minute")
    assert client.post(f"/deployments/{deployment['id']}/deploy").status_code == 202


def test_an_upload_past_the_limit_in_flight_gets_429_until_a_crashed_processs_upload_expires(
    client, tenant_token, limit, redis_client
):
    # Given a tenant allowed one upload in flight, which an API process that died left held
    limit(max_uploads=1)
    deployment = archive_deployment(client, context_archive(dockerfile("true")))
    key = keys.tenant_slots(tenant_token[0], "max_uploads")
    now_s, now_us = redis_client.time()
    redis_client.zadd(key, {"upload-of-a-dead-process": now_s * 1000 + now_us // 1000 + 1500})
    archive = {"archive": ("src.tar.gz", context_archive(dockerfile("true")))}
    # Then an upload is refused, told to try again when that slot expires
    refused = client.post(f"/deployments/{deployment['id']}/upload", files=archive)
    assert assert_too_many(refused, "max_uploads", 2) <= 2
    assert "uploads in flight" in refused.json()["message"]
    # And once it expired (no process renews it), an upload goes through and gives its slot back
    time.sleep(1.6)
    uploaded = client.post(f"/deployments/{deployment['id']}/upload", files=archive)
    assert uploaded.status_code == 200, uploaded.text
    assert redis_client.zcard(key) == 0


def test_log_websockets_past_the_limit_are_refused_until_one_closes(
    client, tenant_token, limit, in_process_api, redis_client
):
    # Given a tenant allowed one log WebSocket, and a pending build (its stream waits for lines)
    limit(max_log_streams=1)
    build = deploy(client, archive_deployment(client, context_archive(dockerfile("true"))))
    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    stream = "/api/v1" + build_path(build) + "/logs/stream"
    conductor = in_process_api.conductor
    held = keys.tenant_slots(tenant_token[0], "max_log_streams")

    async def close_code_of_another() -> int:
        """How another stream ends: refused, or (the build having ended) replayed and closed."""
        try:
            async with conductor.simulate_ws(stream, headers=headers, timeout=5) as ws:
                await asyncio.wait_for(ws.receive_text(), 5)
        except falcon.errors.WebSocketDisconnected as closed:
            return closed.code
        raise AssertionError("the stream sent a line")

    async def scenario() -> tuple[int, int, int]:
        async with conductor.simulate_ws(stream, headers=headers) as first:
            await first.wait_ready()
            # When a second one is opened while the first is open, it is refused with 429 (3429)
            refused = await close_code_of_another()
            # When the build ends, the first stream ends (1000) and gives its slot back
            cancelled = await conductor.simulate_post(
                "/api/v1" + build_path(build) + "/cancel", headers=headers
            )
            assert cancelled.status_code == 200, cancelled.text
            with contextlib.suppress(falcon.errors.WebSocketDisconnected):
                await first.receive_text()
            ended = first.close_code
        # Then another may open
        return refused, ended, await close_code_of_another()

    refused, ended, admitted = in_process_api.runner.run(scenario())
    assert (refused, ended, admitted) == (3429, 1000, 1000)
    assert redis_client.zcard(held) == 0


def test_usage_shows_the_tenants_builds_and_limits_and_never_another_tenants(
    client, tenant_token, limit, redis_client, git_deployment, anonymous_client
):
    tenant = tenant_token[0]
    # Given a fresh tenant: nothing running or queued, the farm's limits, no build time
    usage = client.get("/usage")
    assert usage.status_code == 200, usage.text
    defaults = farm_defaults(Config.from_env(api_env()))
    assert usage.json() == {
        "tenant": tenant,
        "running": 0,
        "queued": 0,
        "limits": {name: getattr(defaults, name) for name in defaults.__struct_fields__},
        "month": utc_now()[:7],
        "build_minutes": 0.0,
    }
    # When it queues two builds and an admin changes one of its limits
    deployment = git_deployment()
    for _ in range(2):
        assert client.post(f"/deployments/{deployment['id']}/deploy").status_code == 202
    limit(max_queued=5)
    # Then its usage shows them at once
    usage = client.get("/usage").json()
    assert (usage["running"], usage["queued"], usage["limits"]["max_queued"]) == (0, 2, 5)
    # And the API's per-tenant series count them
    metrics = anonymous_client.get("/metrics")
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
    }
    assert samples[("buildfarm_tenant_builds", (("status", "pending"), ("tenant", tenant)))] == 2
    assert samples[("buildfarm_tenant_builds", (("status", "building"), ("tenant", tenant)))] == 0
    # And another tenant sees only its own: none of these builds, its own limits
    other = f"t-{uuid.uuid4().hex[:12]}"
    other_token = create_token(redis_client, other, "tests")
    seen = client.get("/usage", headers={"Authorization": f"Bearer {other_token}"}).json()
    assert (seen["tenant"], seen["queued"], seen["limits"]["max_queued"]) == (other, 0, defaults.max_queued)
