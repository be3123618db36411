"""Status transitions are compare-and-set in Redis: the rules hold, and racers get one winner."""

import threading
import uuid

import pytest

from common import keys
from common.models import Build, BuildStatus, utc_now
from common.transitions import TRANSITION_LUA, parse_transition, transition_call
from worker.records import BuildRecords, LostClaim


@pytest.fixture
def records(redis_client):
    return BuildRecords(redis_client)


@pytest.fixture
def make_build(redis_client):
    def make(status: BuildStatus = BuildStatus.PENDING, attempt: int = 0) -> Build:
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
            attempt=attempt,
        )
        redis_client.hset(keys.build(build.id), mapping=build.to_redis())
        redis_client.zadd(keys.deployment_builds(build.deployment_id, build.status), {build.id: 1})
        return build

    return make


def move(redis_client, build: Build, to: BuildStatus, attempt: int | None = None):
    script = redis_client.register_script(TRANSITION_LUA)
    call_keys, argv = transition_call(build.id, build.deployment_id, to, {"x": "1"}, attempt=attempt)
    return parse_transition(script(keys=call_keys, args=argv))


ALLOWED = [
    (BuildStatus.PENDING, BuildStatus.BUILDING),
    (BuildStatus.PENDING, BuildStatus.CANCELLED),
    (BuildStatus.BUILDING, BuildStatus.SUCCESS),
    (BuildStatus.BUILDING, BuildStatus.FAILED),
    (BuildStatus.BUILDING, BuildStatus.CANCELLED),
]


@pytest.mark.parametrize("start,to", ALLOWED)
def test_allowed_transitions_change_the_status_and_the_status_index(redis_client, make_build, start, to):
    build = make_build(start)
    result = move(redis_client, build, to)
    assert result.ok and result.previous == start
    assert redis_client.hget(keys.build(build.id), "status").decode() == to
    assert redis_client.zscore(keys.deployment_builds(build.deployment_id, to), build.id) == 1
    assert redis_client.zscore(keys.deployment_builds(build.deployment_id, start), build.id) is None


@pytest.mark.parametrize("start", list(BuildStatus))
@pytest.mark.parametrize("to", list(BuildStatus))
def test_every_other_transition_is_refused_and_changes_nothing(redis_client, make_build, start, to):
    if (start, to) in ALLOWED:
        return
    build = make_build(start)
    before = redis_client.hgetall(keys.build(build.id))
    result = move(redis_client, build, to)
    assert not result.ok and result.reason == "invalid_transition" and result.previous == start
    assert redis_client.hgetall(keys.build(build.id)) == before


def test_a_missing_build_cannot_transition(redis_client, make_build):
    build = make_build()
    redis_client.delete(keys.build(build.id))
    assert move(redis_client, build, BuildStatus.BUILDING).reason == "not_found"


def test_two_workers_racing_to_claim_a_build_get_exactly_one_winner(records, make_build):
    for _ in range(20):
        build = make_build()
        barrier = threading.Barrier(8)
        winners = []

        def claim(n: int, build=build, barrier=barrier, winners=winners):
            mine = records.load(build.id)
            barrier.wait()
            if records.claim(mine, f"worker-{n}") is not None:
                winners.append(n)

        threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        assert len(winners) == 1
        assert records.load(build.id).worker == f"worker-{winners[0]}"


def test_cancel_racing_a_claim_leaves_one_consistent_outcome(redis_client, records, make_build):
    for _ in range(20):
        build = make_build()
        barrier = threading.Barrier(2)
        outcome = {}

        def claim(build=build, barrier=barrier, outcome=outcome):
            mine = records.load(build.id)
            barrier.wait()
            outcome["claimed"] = records.claim(mine, "w") is not None

        def cancel(build=build, barrier=barrier, outcome=outcome):
            barrier.wait()
            outcome["cancelled"] = move(redis_client, build, BuildStatus.CANCELLED).ok

        threads = [threading.Thread(target=claim), threading.Thread(target=cancel)]
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
    stale = records.claim(records.load(build.id), "old-worker")
    # Another attempt takes the build over.
    records.redis.hset(keys.build(build.id), "attempt", stale.attempt + 1)
    with pytest.raises(LostClaim):
        records.update(stale, commit_sha="f" * 40)
    assert not records.finish(stale, BuildStatus.SUCCESS, image_tag="x")
    current = records.load(build.id)
    assert current.status == BuildStatus.BUILDING and current.commit_sha is None and current.image_tag is None
