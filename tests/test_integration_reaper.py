"""The reaper on real Redis (and S3 for the archive): nothing stays pending or building
forever, whatever happened to the queue message or the worker."""

import time
import uuid

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker

from common.config import Config
from common.models import Build, BuildStatus, utc_now
from common.records import keys
from worker.context import WorkerContext
from worker.reaper import reap_once


@pytest.fixture
def stub_broker():
    """Captures the messages the reaper queues (the queue itself is not under test here)."""
    previous = dramatiq.get_broker()
    broker = StubBroker()
    broker.declare_queue("builds")
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)


@pytest.fixture
def ctx(config, redis_client, s3, stub_broker):
    settings = {**config.__dict__, "queue_deadline_s": 60, "max_attempts": 2, "lease_ttl_s": 5}
    return WorkerContext(Config(**settings), redis_client, s3, worker_id="reaper-test:1")


def store_build(redis_client, status: BuildStatus, entered_ms: float, **fields) -> Build:
    build = Build(
        id=str(uuid.uuid4()),
        deployment_id=str(uuid.uuid4()),
        tenant="t",
        number=1,
        status=status.value,
        subdomain="s",
        source_type="archive",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
        **fields,
    )
    redis_client.hset(keys.build(build.id), mapping=build.to_redis())
    redis_client.zadd(keys.deployment_builds(build.deployment_id, status), {build.id: 1})
    redis_client.zadd(keys.active_builds(status), {build.id: entered_ms})
    return build


def now_ms() -> float:
    return time.time() * 1000


def test_a_build_pending_past_the_queue_deadline_fails_as_expired(ctx, redis_client):
    old = store_build(redis_client, BuildStatus.PENDING, now_ms() - 61_000)
    fresh = store_build(redis_client, BuildStatus.PENDING, now_ms())
    reap_once(ctx)
    expired = ctx.records.load(old.id)
    assert expired.status == BuildStatus.FAILED and expired.finished_at
    assert expired.error == "Expired: waited in the queue for more than 60 s"
    assert expired.error_kind == "timeout"
    assert ctx.records.load(fresh.id).status == BuildStatus.PENDING
    assert redis_client.zscore(keys.active_builds("pending"), old.id) is None


def test_a_building_build_whose_lease_expired_is_queued_again_once(ctx, redis_client, stub_broker):
    lapsed = store_build(
        redis_client, BuildStatus.BUILDING, now_ms(), attempt=1, lease_expires_ms=1, worker="gone:1"
    )
    alive = store_build(
        redis_client,
        BuildStatus.BUILDING,
        now_ms(),
        attempt=1,
        lease_expires_ms=int(now_ms()) + 60_000,
        worker="alive:1",
    )
    reap_once(ctx)
    reap_once(ctx)
    queued = _queued(stub_broker)
    assert queued.count(lapsed.id) == 1 and alive.id not in queued
    assert ctx.records.load(lapsed.id).status == BuildStatus.BUILDING


def _queued(broker: StubBroker) -> list[str]:
    from dramatiq import Message

    return [Message.decode(raw).args[0] for raw in list(broker.queues["builds"].queue)]


def test_a_build_out_of_attempts_with_a_lost_worker_fails_as_worker_lost(ctx, redis_client):
    build = store_build(
        redis_client, BuildStatus.BUILDING, now_ms(), attempt=2, lease_expires_ms=1, worker="gone:2"
    )
    reap_once(ctx)
    lost = ctx.records.load(build.id)
    assert lost.status == BuildStatus.FAILED and lost.error.startswith("Worker lost: 2 attempt(s)")
    assert lost.error_kind == "infrastructure"
    assert lost.attempt == 3 and lost.worker == "reaper-test:1"
    assert lost.log_state == "archived"


def test_a_cancelled_build_whose_worker_was_lost_ends_as_cancelled(ctx, redis_client):
    build = store_build(
        redis_client, BuildStatus.BUILDING, now_ms(), attempt=1, lease_expires_ms=1, cancel_requested_by="ops"
    )
    reap_once(ctx)
    ended = ctx.records.load(build.id)
    assert (
        ended.status == BuildStatus.CANCELLED
        and ended.error == "Build cancelled by ops (its worker was lost)"
        and ended.error_kind == "cancelled"
    )
