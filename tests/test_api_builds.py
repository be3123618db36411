"""The Builds read API: newest first, cursor paging over many records, status filter, get,
logs before any output, and cancelling a pending build."""

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from api.store import RecordStore
from common.models import Build, BuildStatus, utc_now
from tests.conftest import unique_subdomain
from tests.test_integration_records import commands_sent

pytestmark = pytest.mark.in_process

MANY = 1200


def insert_builds(config, deployment: dict, tenant: str, count: int) -> list[str]:
    """Stores builds through the API's own store (no queue message: no worker runs them)."""

    async def insert() -> list[str]:
        client = aioredis.Redis.from_url(config.redis_url)
        store = RecordStore(client)
        ids = []
        for _ in range(count):
            build = Build(
                id=str(uuid.uuid4()),
                deployment_id=deployment["id"],
                tenant=tenant,
                number=0,
                status="pending",
                subdomain=deployment["subdomain"],
                source_type="archive",
                dockerfile_path="Dockerfile",
                created_at=utc_now(),
                commit_sha="a" * 64,
            )
            await store.create_build(build)
            ids.append(build.id)
        await client.aclose()
        return ids

    return asyncio.run(insert())


@pytest.fixture
def deployment(client):
    return client.post(
        "/deployments", json={"name": "a", "subdomain": unique_subdomain(), "source_type": "archive"}
    ).json()


def all_pages(client, path: str, params: dict) -> list[list[dict]]:
    pages, url = [], None
    response = client.get(path, params=params)
    while True:
        assert response.status_code == 200
        pages.append(response.json())
        url = response.links.get("next", {}).get("url")
        if not url:
            return pages
        response = client.get(url.removeprefix("/api/v1"))


def test_builds_are_listed_newest_first_and_paged_over_many_records(client, config, deployment, tenant_token):
    ids = insert_builds(config, deployment, tenant_token[0], MANY)
    pages = all_pages(client, f"/deployments/{deployment['id']}/builds", {"limit": 100})
    assert len(pages) == MANY // 100
    listed = [b["id"] for page in pages for b in page]
    assert listed == ids[::-1]
    numbers = [b["number"] for page in pages for b in page]
    assert numbers == list(range(MANY, 0, -1))
    assert set(pages[0][0]) >= {
        "id",
        "deployment_id",
        "status",
        "commit_sha",
        "image_tag",
        "started_at",
        "finished_at",
    }


def test_the_status_filter_pages_through_one_status_only(client, config, deployment, tenant_token):
    ids = insert_builds(config, deployment, tenant_token[0], 30)
    for build_id in ids[::3]:
        assert client.post(f"/deployments/{deployment['id']}/builds/{build_id}/cancel").status_code == 200
    cancelled = all_pages(
        client, f"/deployments/{deployment['id']}/builds", {"status": "cancelled", "limit": 4}
    )
    assert [b["id"] for page in cancelled for b in page] == ids[::3][::-1]
    assert all(b["status"] == "cancelled" and b["finished_at"] for page in cancelled for b in page)
    pending = all_pages(
        client, f"/deployments/{deployment['id']}/builds", {"status": "pending", "limit": 100}
    )
    assert len(pending[0]) == 20


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 101}, {"limit": "x"}, {"cursor": "abc"}, {"status": "done"}]
)
def test_bad_paging_parameters_are_a_400(client, deployment, params):
    response = client.get(f"/deployments/{deployment['id']}/builds", params=params)
    assert response.status_code == 400 and response.json()["error"] == "bad_request"


def test_a_build_is_fetched_by_id_with_the_seed_fields(client, config, deployment, tenant_token):
    [build_id] = insert_builds(config, deployment, tenant_token[0], 1)
    build = client.get(f"/deployments/{deployment['id']}/builds/{build_id}").json()
    assert build["id"] == build_id and build["deployment_id"] == deployment["id"]
    assert build["status"] == "pending" and build["image_tag"] is None and build["started_at"] is None


def test_logs_of_a_pending_build_are_not_available(client, config, deployment, tenant_token):
    [build_id] = insert_builds(config, deployment, tenant_token[0], 1)
    response = client.get(f"/deployments/{deployment['id']}/builds/{build_id}/logs")
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "message": "Build logs not available"}


def test_a_pending_build_is_cancelled_at_once_and_cancel_is_idempotent(
    client, config, deployment, tenant_token
):
    [build_id] = insert_builds(config, deployment, tenant_token[0], 1)
    path = f"/deployments/{deployment['id']}/builds/{build_id}/cancel"
    first = client.post(path)
    assert first.status_code == 200 and first.json()["status"] == "cancelled"
    assert "before it started" in first.json()["error"] and first.json()["error_kind"] == "cancelled"
    again = client.post(path)
    assert again.status_code == 200 and again.json() == first.json()
    logs = client.get(f"/deployments/{deployment['id']}/builds/{build_id}/logs")
    assert logs.status_code == 404 and logs.json()["message"] == "Build logs not available"
    assert client.get(f"/deployments/{deployment['id']}").json()["status"] == BuildStatus.CANCELLED


def test_cancelling_a_finished_build_is_a_conflict(client, config, deployment, tenant_token, redis_client):
    from common.records import builds
    from common.records.call import SyncRunner

    [build_id] = insert_builds(config, deployment, tenant_token[0], 1)
    for to in (BuildStatus.BUILDING, BuildStatus.SUCCESS):
        assert SyncRunner(redis_client).run(builds.transition(build_id, deployment["id"], to)).ok
    response = client.post(f"/deployments/{deployment['id']}/builds/{build_id}/cancel")
    assert response.status_code == 409 and response.json()["error"] == "conflict"


def test_a_page_of_builds_costs_one_round_trip_with_the_token_and_a_page_kept_no_more(
    client, config, deployment, tenant_token, redis_client
):
    insert_builds(config, deployment, tenant_token[0], 60)
    path = f"/deployments/{deployment['id']}/builds"
    first = client.get(path, params={"limit": 50})  # loads the scripts: later requests send EVALSHA alone
    # A page not kept yet: the token with the deployment's builds revision, then the page
    fresh = commands_sent(redis_client, None, lambda: client.get(path, params={"limit": 40}))
    assert fresh == ["EVALSHA", "EVALSHA"]
    # A page kept: the token with the revision, and nothing else
    again: list = []
    kept = commands_sent(redis_client, None, lambda: again.append(client.get(path, params={"limit": 50})))
    assert kept == ["EVALSHA"]
    assert again[0].json() == first.json() and len(first.json()) == 50


def test_a_build_is_read_with_the_token_in_one_round_trip(
    client, config, deployment, tenant_token, redis_client
):
    [build_id] = insert_builds(config, deployment, tenant_token[0], 1)
    path = f"/deployments/{deployment['id']}/builds/{build_id}"
    assert client.post(f"{path}/cancel").status_code == 200
    client.get(path)  # loads the script: later requests send EVALSHA alone
    got: list = []
    assert commands_sent(redis_client, None, lambda: got.append(client.get(path))) == ["EVALSHA"]
    assert got[0].status_code == 200 and got[0].json()["id"] == build_id
    assert got[0].json()["status"] == "cancelled"
