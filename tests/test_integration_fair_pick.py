"""The fair choice of the next build (common/records/scripts.py PICK, `claim_next`) on real Redis:
the tenants in turn, oldest first within a tenant, a tenant at its max_running skipped, builds of
one deployment by number, and the tenant's counts and queue positions it keeps. The choice is
farm-wide, so these tests run on a database of their own, emptied before each."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlsplit

import pytest
import redis

from common.config import Config
from common.models import Build, BuildStatus, utc_now
from common.records import keys
from common.records.builds import QueueFull, TenantCounts
from common.tenant_limits import set_limits
from worker.records import BuildRecords

# A database no other test uses: the choice reads every tenant's queue.
OWN_DB = 9
SETTINGS = Config(lease_ttl_s=30, max_attempts=3, one_build_per_deployment=True, queue_deadline_s=3600)


@pytest.fixture
def own_redis(config):
    client = redis.Redis.from_url(urlsplit(config.redis_url)._replace(path=f"/{OWN_DB}").geturl())
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


@pytest.fixture
def records(own_redis):
    return BuildRecords(own_redis)


def queue(
    records: BuildRecords, tenant: str, deployment_id=None, build_id=None, max_queued: int = 0, queued=True
):
    """A pending build of the tenant, stored as the API stores one, which sends its queue message
    next (`queued`); its deployment made if new."""
    deployment_id = deployment_id or str(uuid.uuid4())
    records.redis.hset(keys.deployment(deployment_id), "id", deployment_id)
    build = Build(
        id=build_id or str(uuid.uuid4()),
        deployment_id=deployment_id,
        tenant=tenant,
        number=0,
        status=BuildStatus.PENDING.value,
        subdomain="s",
        source_type="archive",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
    )
    assert records.create_build(build, max_queued, queued) is not None
    # A tenant's queue is ordered by entry time in ms (Redis's clock), and builds that entered in
    # the same millisecond by id: a millisecond apart, the order of these tests is the order made.
    time.sleep(0.002)
    return build


def next_build(records: BuildRecords, default_max_running: int = 0):
    return records.claim_next("w", SETTINGS, default_max_running)


def test_a_tenant_queued_behind_another_tenants_backlog_is_served_next_and_then_they_alternate(records):
    backlog = [queue(records, "a") for _ in range(4)]
    assert next_build(records).build_id == backlog[0].id
    mine = [queue(records, "b") for _ in range(2)]
    # B, queued after A was served, comes next; then A and B in turn, each oldest first
    order = [next_build(records).build_id for _ in range(5)]
    assert order == [mine[0].id, backlog[1].id, mine[1].id, backlog[2].id, backlog[3].id]
    assert next_build(records).outcome == "none"


def test_a_tenant_at_its_running_limit_waits_and_a_raised_limit_applies_to_the_next_choice(records):
    builds = [queue(records, "a") for _ in range(3)]
    records.run(set_limits("a", {"max_running": 1}))
    assert next_build(records).build_id == builds[0].id
    assert next_build(records).outcome == "waiting"
    other = queue(records, "b")
    assert next_build(records).build_id == other.id
    records.run(set_limits("a", {"max_running": 2}))
    assert next_build(records).build_id == builds[1].id
    assert next_build(records).outcome == "waiting"
    # The farm's default applies to a tenant without its own
    records.run(set_limits("a", {"max_running": None}))
    assert next_build(records, default_max_running=3).build_id == builds[2].id


def test_builds_of_one_deployment_stored_in_the_same_millisecond_start_by_number(records):
    deployment = str(uuid.uuid4())
    # Ids that sort against the builds' numbers, in one millisecond of the tenant's queue
    first, second = queue(records, "a", deployment, "z" * 8), queue(records, "a", deployment, "a" * 8)
    records.redis.zadd(keys.tenant_builds("a", BuildStatus.PENDING), {first.id: 1, second.id: 1})
    assert next_build(records).build_id == first.id
    # The deployment's next waits for its running build
    assert next_build(records).outcome == "waiting"


def test_counts_and_queue_positions_follow_the_builds(records):
    builds = [queue(records, "a") for _ in range(3)]
    assert records.tenant_counts("a") == TenantCounts(running=0, queued=3)
    assert [records.queue_position(build) for build in builds] == [1, 2, 3]
    next_build(records)
    assert (records.tenant_counts("a").running, records.tenant_counts("a").queued) == (1, 2)
    assert [records.queue_position(build) for build in builds] == [None, 1, 2]


def test_a_full_queue_refuses_a_new_build_and_stores_nothing(records):
    queue(records, "a")
    with pytest.raises(QueueFull):
        queue(records, "a", max_queued=1)
    assert records.tenant_counts("a").queued == 1
    queue(records, "a", max_queued=2)
    assert records.tenant_counts("a").queued == 2


def test_a_build_stored_without_a_queue_message_is_never_chosen_nor_counted(records):
    # (as tests store builds that no worker should run)
    queue(records, "a", queued=False)
    assert next_build(records).outcome == "none"
    assert records.tenant_counts("a") == TenantCounts(running=0, queued=0)
