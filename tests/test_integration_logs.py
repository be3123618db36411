"""The worker's log writer on real Redis: numbered lines, batching, cap, end marker, fencing."""

import asyncio
import uuid

import pytest
import redis.asyncio as aioredis

from api.logreader import LogReader
from common.config import Config
from common.logformat import CONTINUED, END_FIELD, LINE_FIELD, entry_cost, line_number
from common.records import fields, keys
from tests.conftest import wait_until
from tests.farm import building_build
from worker.logwriter import BATCH_BYTES, LogWriter


@pytest.fixture
def build_id(redis_client):
    build_id = str(uuid.uuid4())
    redis_client.hset(keys.build(build_id), mapping={fields.ATTEMPT: "1", fields.STATUS: "building"})
    return build_id


def writer(redis_client, build_id, attempt=1, max_bytes=10_000_000, batch=100, max_line_bytes=65536):
    config = Config(
        log_max_bytes=max_bytes,
        log_max_line_bytes=max_line_bytes,
        log_batch_lines=batch,
        log_flush_interval_s=0.01,
    )
    return LogWriter(redis_client, build_id, attempt, config)


def read_all(redis_client, build_id):
    return redis_client.xrange(keys.build_log(build_id))


def test_lines_arrive_numbered_in_order_with_an_end_marker(redis_client, build_id):
    log = writer(redis_client, build_id)
    for i in range(1, 1001):
        log.line(f"line {i} ✓")
    log.drain()
    log.end("success")
    entries = read_all(redis_client, build_id)
    assert [line_number(i) for i, _ in entries] == list(range(1, 1002))
    assert [f[LINE_FIELD].decode() for _, f in entries[:-1]] == [f"line {i} ✓" for i in range(1, 1001)]
    assert entries[-1][1] == {END_FIELD: b"success"}


def test_a_log_over_its_cap_is_cut_with_a_visible_notice_but_keeps_its_footer(redis_client, build_id):
    log = writer(redis_client, build_id, max_bytes=1000)
    for i in range(500):
        log.line(f"{i:09d}")
    log.line("ERROR: the reason", footer=True)
    log.drain()
    lines = [f[LINE_FIELD].decode() for _, f in read_all(redis_client, build_id)]
    assert lines[:3] == ["000000000", "000000001", "000000002"]
    # The cap counts each line's cost in Redis, not its length (common/logformat.py)
    assert len(lines) == 1000 // entry_cost(9) + 2
    assert lines[-2].startswith("[log truncated")
    assert lines[-1] == "ERROR: the reason"


def test_a_writer_whose_attempt_was_superseded_writes_nothing_more(redis_client, build_id):
    log = writer(redis_client, build_id)
    log.line("from attempt 1")
    log.drain()
    redis_client.hset(keys.build(build_id), fields.ATTEMPT, "2")
    stale = writer(redis_client, build_id, attempt=1)
    stale.line("stale line")
    stale.drain()
    stale.end("success")
    assert stale.lost_claim
    assert [f for _, f in read_all(redis_client, build_id)] == [{LINE_FIELD: b"from attempt 1"}]


def test_a_takeover_continues_the_line_numbers(redis_client, build_id):
    first = writer(redis_client, build_id)
    first.line("a")
    first.line("b")
    first.drain()
    redis_client.hset(keys.build(build_id), fields.ATTEMPT, "2")
    second = writer(redis_client, build_id, attempt=2)
    second.line("c")
    second.drain()
    assert [line_number(i) for i, _ in read_all(redis_client, build_id)] == [1, 2, 3]


def test_a_long_line_is_stored_in_pieces_that_say_they_continue_it(redis_client, build_id):
    log = writer(redis_client, build_id, max_line_bytes=1000)
    long = "".join(f"{i:05d}" for i in range(500))
    log.line("before")
    log.line(long)
    log.line("after")
    log.drain()
    lines = [f[LINE_FIELD].decode() for _, f in read_all(redis_client, build_id)]
    assert lines == [
        "before",
        long[:1000],
        CONTINUED + long[1000:2000],
        CONTINUED + long[2000:],
        "after",
    ]


def test_a_million_empty_lines_stop_at_the_cap_in_redis_memory(redis_client, build_id):
    # Given a cap of 2 MiB, which a million empty lines would pass eight times over in Redis
    # (16 bytes each, measured) though they are only 1 MB of text
    cap = 2 * 1024 * 1024
    log = writer(redis_client, build_id, max_bytes=cap, batch=500)
    for _ in range(1_000_000):
        log.line("")
    log.line("Build failed", footer=True)
    log.drain()
    # Then the stream takes no more than the cap in Redis, and says it was cut
    stream = keys.build_log(build_id)
    used = redis_client.memory_usage(stream, samples=0)
    last = [f[LINE_FIELD].decode() for _, f in redis_client.xrevrange(stream, count=2)]
    assert last == ["Build failed", last[1]] and last[1].startswith("[log truncated")
    print(f"\n{redis_client.xlen(stream)} entries take {used} bytes of Redis for a cap of {cap}")
    assert cap / 3 < used <= cap


def test_a_takeover_counts_the_lines_of_earlier_attempts_against_the_cap(redis_client, build_id):
    first = writer(redis_client, build_id, max_bytes=100_000)
    for i in range(1000):
        first.line(f"{i:050d}")
    first.drain()
    redis_client.hset(keys.build(build_id), fields.ATTEMPT, "2")
    second = writer(redis_client, build_id, attempt=2, max_bytes=100_000)
    assert second.cost == redis_client.memory_usage(keys.build_log(build_id), samples=0)


def test_a_flood_of_long_lines_is_shipped_by_its_bytes_not_held_until_a_batch_of_lines_fills(
    redis_client, build_id
):
    # Given a writer with batches of a million lines and no flush due for an hour
    log = writer(redis_client, build_id, max_bytes=1 << 30, batch=1_000_000)
    log.flush_interval_s = 3600
    # When a build writes 400 lines of 64 KiB (25 MiB)
    for _ in range(400):
        log.line("p" * 65536)
    # Then all but the last batch's bytes reach Redis before the build ends: the worker holds
    # at most a few MiB of them, not all 25
    held = BATCH_BYTES // 65536
    wait_until(lambda: redis_client.xlen(keys.build_log(build_id)) >= 400 - held, 10, what="the lines")
    log.drain()
    assert redis_client.xlen(keys.build_log(build_id)) == 400


class _WorkerEndsTheBuildBeforeTheStatusRead(aioredis.Redis):
    """A real Redis client on which the worker's last lines and the end of the build land
    exactly between a follower's read of the stream and its read of the build's status."""

    on_status_read = None

    async def hmget(self, *args, **kwargs):
        if self.on_status_read is not None:
            finish, self.on_status_read = self.on_status_read, None
            finish()
        return await super().hmget(*args, **kwargs)


def test_a_follower_gets_the_lines_a_build_wrote_just_before_it_ended(config, redis_client, build_id):
    # Given a follower of a running build that has written one line
    log = writer(redis_client, build_id)
    log.line("first")
    wait_until(lambda: redis_client.xlen(keys.build_log(build_id)) == 1, 5, what="the first line")
    build = building_build(id=build_id)
    client = _WorkerEndsTheBuildBeforeTheStatusRead.from_url(config.redis_url)

    def worker_ends_the_build() -> None:
        log.line("last words")
        log.drain()
        redis_client.hset(keys.build(build_id), fields.STATUS, "failed")
        log.end("failed")

    async def follow() -> list[str]:
        reader = LogReader(config, client, s3=None)
        seen = []
        async for number, line in reader.lines(build, follow=True):
            seen.append(line)
            if number == 1:
                # When the worker writes its last line and ends the build right after the
                # follower found the stream caught up
                client.on_status_read = worker_ends_the_build
        await client.aclose()
        return seen

    # Then the follower still gets the last line
    assert asyncio.run(follow()) == ["first", "last words"]
