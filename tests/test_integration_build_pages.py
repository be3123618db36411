"""Pages of builds kept by the API (api/build_pages.py) on real Redis: served again only while the
deployment's builds revision says nothing changed, read again after every kind of write to a
build, and never to another tenant or after the deployment is gone."""

import asyncio
import json
import uuid

import falcon
import pytest
import redis.asyncio as aioredis

from api.build_pages import BuildPages
from api.store import RecordStore
from common import contract
from common.models import BuildStatus
from common.records import builds, deployments
from common.records.call import SyncRunner
from tests.test_integration_records import commands_sent, new_build, new_deployment


@pytest.fixture
def api(config):
    """A BuildPages over the API's own (asyncio) store, and a way to await its pages."""
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(config.redis_url, single_connection_client=True)
    store = RecordStore(client)
    pages = BuildPages(store)

    def page(tenant, deployment_id, status=None, limit=50, before=None):
        """As the list route asks: the revision read first (with the token, in the API)."""

        async def ask():
            current = await store.builds_revision(deployment_id)
            return await pages.page(tenant, current, (deployment_id, status, limit, before))

        return loop.run_until_complete(ask())

    yield pages, page, client, loop
    loop.run_until_complete(client.aclose())
    loop.close()


@pytest.fixture
def records(redis_client):
    return SyncRunner(redis_client).run


@pytest.fixture
def deployment(records):
    return records(deployments.create_deployment(new_deployment(f"t-{uuid.uuid4().hex[:12]}")))


def fresh(records, deployment, status=None) -> list:
    """The page as the records read now, as clients get it."""
    return json.loads(
        contract.encode(
            records(builds.list_builds(deployment.tenant, deployment.id, status, 50, None)).builds
        )
    )


def test_a_page_is_served_again_while_nothing_changed_and_read_again_after_every_write(
    config, api, records, deployment
):
    _, page, _, _ = api
    first, second = (records(builds.create_build(new_build(deployment), queued=True)) for _ in range(2))
    body, _ = page(deployment.tenant, deployment.id)
    assert page(deployment.tenant, deployment.id)[0] is body  # kept: not read nor encoded again
    pending_page, _ = page(deployment.tenant, deployment.id, BuildStatus.PENDING.value)
    worker = f"w-{uuid.uuid4().hex[:6]}"

    writes = {
        "a new build": lambda: records(builds.create_build(new_build(deployment), queued=True)),
        "a claim": lambda: records(builds.claim(first, worker, config)),
        "fields set under the claim": lambda: records(builds.update(first, image_tag="registry/app:1")),
        "a takeover": lambda: records(builds.seize(first, "another-worker")),
        "a status change": lambda: records(
            builds.transition(second.id, deployment.id, BuildStatus.CANCELLED)
        ),
        "the end of a build": lambda: records(builds.finish(first, BuildStatus.SUCCESS)),
    }
    for write, do in writes.items():
        do()
        previous, (body, _) = body, page(deployment.tenant, deployment.id)
        assert body is not previous, write
        assert json.loads(body) == fresh(records, deployment), write
    # A page of one status follows the builds leaving it too.
    pending, _ = page(deployment.tenant, deployment.id, BuildStatus.PENDING.value)
    assert pending is not pending_page
    assert json.loads(pending) == fresh(records, deployment, BuildStatus.PENDING.value)


def test_a_kept_page_is_not_served_to_another_tenant_nor_once_the_deployment_is_deleted(
    api, records, deployment
):
    _, page, _, _ = api
    build = records(builds.create_build(new_build(deployment)))
    records(builds.transition(build.id, deployment.id, BuildStatus.CANCELLED))
    page(deployment.tenant, deployment.id)
    with pytest.raises(falcon.HTTPNotFound):
        page("another-tenant", deployment.id)
    records(deployments.delete_deployment(deployment))
    with pytest.raises(falcon.HTTPNotFound):
        page(deployment.tenant, deployment.id)


def test_a_kept_page_costs_no_read_of_its_own_and_a_page_read_one(api, records, redis_client, deployment):
    pages, _, client, loop = api
    for _ in range(60):
        records(builds.create_build(new_build(deployment)))
    current = records(builds.builds_revision(deployment.id))

    def page():
        return loop.run_until_complete(
            pages.page(deployment.tenant, current, (deployment.id, None, 50, None))
        )

    loop.run_until_complete(
        pages.store.list_builds(deployment.tenant, deployment.id, None, 1, None)
    )  # loads the script
    port = int(loop.run_until_complete(client.client_info())["addr"].rsplit(":", 1)[1])
    assert commands_sent(redis_client, port, page) == ["EVALSHA"]
    assert commands_sent(redis_client, port, page) == []


def test_the_pages_kept_stay_within_their_bytes(api, records, deployment):
    pages, page, _, _ = api
    for _ in range(20):
        records(builds.create_build(new_build(deployment)))
    one, _ = page(deployment.tenant, deployment.id, limit=1)
    pages.max_bytes = len(one) * 3
    for before in range(21, 1, -1):
        page(deployment.tenant, deployment.id, limit=1, before=before)
    assert len(pages._pages) <= 3 and sum(len(p.body) for p in pages._pages.values()) <= pages.max_bytes
