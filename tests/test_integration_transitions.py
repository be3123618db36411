"""Status transitions are compare-and-set in Redis: the rules hold, and racers get one winner.
The model's operations run through both adapters (`run`: sync and async); the claim, lease and
fencing through the worker's."""

import threading
import time
import uuid

import pytest

from common.config import Config
from common.models import Build, BuildStatus, utc_now
from common.records import builds, fields, keys
from common.records.builds import Claim, LostClaim
from common.records.call import SyncRunner
from worker.records import BuildRecords

LEASE_S = 30


@pytest.fixture
def records(redis_client):
    return BuildRecords(redis_client)


def claim(records: BuildRecords, build: Build, worker: str = "w", **options) -> Claim:
    return records.claim(records.load(build.id), worker, claim_settings(**options))


def claim_settings(**options) -> Config:
    """The farm's claim settings in these tests: 3 attempts, no one-at-a-time rule, a day's queue."""
    settings = {"max_attempts": 3, "one_build_per_deployment": False, "queue_deadline_s": 3600, **options}
    return Config(lease_ttl_s=LEASE_S, **settings)


@pytest.fixture
def make_build(redis_client):
    def make(
        status: BuildStatus = BuildStatus.PENDING, attempt: int = 0, deployment_id=None, number=1
    ) -> Build:
        build = Build(
            id=str(uuid.uuid4()),
            deployment_id=deployment_id or str(uuid.uuid4()),
            tenant="t",
            number=number,
            status=status.value,
            subdomain="s",
            source_type="archive",
            dockerfile_path="Dockerfile",
            created_at=utc_now(),
            attempt=attempt,
        )
        redis_client.hset(keys.build(build.id), mapping=build.to_redis())
        redis_client.zadd(keys.deployment_builds(build.deployment_id, build.status), {build.id: number})
        if not status.is_terminal:
            redis_client.zadd(keys.active_builds(status), {build.id: time.time() * 1000})
        return build

    return make


def move(run, build: Build, to: BuildStatus, attempt: int | None = None):
    return run(builds.transition(build.id, build.deployment_id, to, {"x": "1"}, attempt=attempt))


ALLOWED = [
    (BuildStatus.PENDING, BuildStatus.BUILDING),
    (BuildStatus.PENDING, BuildStatus.CANCELLED),
    (BuildStatus.PENDING, BuildStatus.FAILED),
    (BuildStatus.BUILDING, BuildStatus.SUCCESS),
    (BuildStatus.BUILDING, BuildStatus.FAILED),
    (BuildStatus.BUILDING, BuildStatus.CANCELLED),
]


@pytest.mark.parametrize("start,to", ALLOWED)
def test_allowed_transitions_change_the_status_and_the_status_index(run, redis_client, make_build, start, to):
    build = make_build(start)
    result = move(run, build, to)
    assert result.ok and result.previous == start
    assert redis_client.hget(keys.build(build.id), fields.STATUS).decode() == to
    assert redis_client.zscore(keys.deployment_builds(build.deployment_id, to), build.id) == 1
    assert redis_client.zscore(keys.deployment_builds(build.deployment_id, start), build.id) is None


@pytest.mark.parametrize("start", list(BuildStatus))
@pytest.mark.parametrize("to", list(BuildStatus))
def test_every_other_transition_is_refused_and_changes_nothing(run, redis_client, make_build, start, to):
    if (start, to) in ALLOWED:
        return
    build = make_build(start)
    before = redis_client.hgetall(keys.build(build.id))
    result = move(run, build, to)
    assert not result.ok and result.reason == "invalid_transition" and result.previous == start
    assert redis_client.hgetall(keys.build(build.id)) == before


def test_a_missing_build_cannot_transition(run, redis_client, make_build):
    build = make_build()
    redis_client.delete(keys.build(build.id))
    assert move(run, build, BuildStatus.BUILDING).reason == "not_found"


def test_a_transition_under_a_lost_claim_is_fenced_and_changes_nothing(run, redis_client, make_build):
    build = make_build(BuildStatus.BUILDING, attempt=2)
    before = redis_client.hgetall(keys.build(build.id))
    result = move(run, build, BuildStatus.SUCCESS, attempt=1)
    assert (result.ok, result.reason, result.previous) == (False, "fenced", BuildStatus.BUILDING)
    assert redis_client.hgetall(keys.build(build.id)) == before
    assert move(run, build, BuildStatus.SUCCESS, attempt=2).ok


def test_two_workers_racing_to_claim_a_build_get_exactly_one_winner(records, make_build):
    for _ in range(20):
        build = make_build()
        barrier = threading.Barrier(8)
        winners = []

        def race(n: int, build=build, barrier=barrier, winners=winners):
            mine = records.load(build.id)
            barrier.wait()
            if records.claim(mine, f"worker-{n}", claim_settings()).outcome == "claimed":
                winners.append(n)

        threads = [threading.Thread(target=race, args=(n,)) for n in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(winners) == 1
        assert records.load(build.id).worker == f"worker-{winners[0]}"


def test_cancel_racing_a_claim_leaves_one_consistent_outcome(redis_client, records, make_build):
    for _ in range(20):
        build = make_build()
        barrier = threading.Barrier(2)
        outcome = {}

        def take(build=build, barrier=barrier, outcome=outcome):
            mine = records.load(build.id)
            barrier.wait()
            outcome["claimed"] = records.claim(mine, "w", claim_settings()).outcome == "claimed"

        def cancel(build=build, barrier=barrier, outcome=outcome):
            barrier.wait()
            outcome["cancelled"] = move(SyncRunner(redis_client).run, build, BuildStatus.CANCELLED).ok

        threads = [threading.Thread(target=take), threading.Thread(target=cancel)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        final = records.load(build.id).status
        if outcome["claimed"] and outcome["cancelled"]:
            assert final == BuildStatus.CANCELLED  # claimed first, then cancelled while building
        else:
            assert outcome["claimed"] != outcome["cancelled"]
            assert final == (BuildStatus.BUILDING if outcome["claimed"] else BuildStatus.CANCELLED)


def test_a_worker_that_lost_its_claim_cannot_write_the_record(records, make_build):
    build = make_build()
    assert claim(records, build, "old-worker").outcome == "claimed"
    stale = records.load(build.id)
    # Another attempt takes the build over.
    records.redis.hset(keys.build(build.id), fields.ATTEMPT, stale.attempt + 1)
    with pytest.raises(LostClaim):
        records.update(stale, commit_sha="f" * 40)
    assert not records.finish(stale, BuildStatus.SUCCESS, image_tag="x")
    current = records.load(build.id)
    assert current.status == BuildStatus.BUILDING and current.commit_sha is None and current.image_tag is None


def test_the_active_sets_follow_a_build_until_it_ends(redis_client, records, make_build):
    build = make_build()
    pending, building = keys.active_builds("pending"), keys.active_builds("building")
    assert redis_client.zscore(pending, build.id) is not None
    assert claim(records, build).outcome == "claimed"
    assert redis_client.zscore(pending, build.id) is None and redis_client.zscore(building, build.id)
    assert records.finish(records.load(build.id), BuildStatus.SUCCESS)
    assert redis_client.zscore(building, build.id) is None


def test_a_build_under_a_live_lease_cannot_be_claimed_again(records, make_build):
    build = make_build()
    assert claim(records, build, "first").outcome == "claimed"
    assert claim(records, build, "second").outcome == "held"


def test_a_build_whose_lease_expired_is_taken_over_under_the_next_attempt(redis_client, records, make_build):
    build = make_build()
    assert claim(records, build, "first").outcome == "claimed"
    first = records.load(build.id)
    redis_client.hset(keys.build(build.id), fields.LEASE_EXPIRES_MS, 1)
    taken = claim(records, build, "second")
    assert (taken.outcome, taken.attempt, taken.took_over_from) == ("claimed", 2, "first")
    # The first worker can neither renew its lease nor write any more.
    assert not records.renew(first, LEASE_S)
    assert not records.finish(first, BuildStatus.SUCCESS)
    assert records.load(build.id).started_at == first.started_at


def test_a_build_out_of_attempts_is_not_taken_over(redis_client, records, make_build):
    build = make_build()
    claim(records, build)
    redis_client.hset(keys.build(build.id), mapping={fields.LEASE_EXPIRES_MS: 1, fields.ATTEMPT: 3})
    assert claim(records, build, max_attempts=3).outcome == "exhausted"


def test_builds_of_one_deployment_run_one_at_a_time_oldest_first(records, make_build):
    deployment = str(uuid.uuid4())
    first = make_build(deployment_id=deployment, number=1)
    second = make_build(deployment_id=deployment, number=2)
    assert claim(records, second, one_build_per_deployment=True).outcome == "busy"
    assert claim(records, first, one_build_per_deployment=True).outcome == "claimed"
    assert claim(records, second, one_build_per_deployment=True).outcome == "busy"
    records.finish(records.load(first.id), BuildStatus.SUCCESS)
    assert claim(records, second, one_build_per_deployment=True).outcome == "claimed"


def test_a_pending_build_past_the_queue_deadline_is_not_run(redis_client, records, make_build):
    build = make_build()
    redis_client.zadd(keys.active_builds("pending"), {build.id: time.time() * 1000 - 10_000})
    assert claim(records, build, queue_deadline_s=5).outcome == "expired"
    assert claim(records, build, queue_deadline_s=60).outcome == "claimed"


def test_a_reaper_seizing_a_build_fences_out_its_lost_worker(records, make_build):
    build = make_build()
    claim(records, build, "lost")
    lost = records.load(build.id)
    reaper_view = records.load(build.id)
    assert records.seize(reaper_view, "reaper")
    assert not records.renew(lost, LEASE_S)
    with pytest.raises(LostClaim):
        records.update(lost, error="late")
