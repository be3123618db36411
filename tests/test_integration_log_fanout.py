"""The log fan-out of an API process (api/logfanout.py) on real Redis, fed by the worker's real log
writer: followers joining at any point get each line once, in order; the build's live reader
serves them all, and stops when its last follower leaves."""

import asyncio

import pytest

from api.logfanout import LogFanout
from api.logreader import LogReader
from common.config import Config
from common.models import Build
from common.records import fields, keys
from common.redis_clients import async_redis, bounded_async_redis
from tests.farm import building_build
from worker.logwriter import LogWriter


@pytest.fixture
def build(redis_client) -> Build:
    build = building_build()
    redis_client.hset(keys.build(build.id), mapping={fields.ATTEMPT: "1", fields.STATUS: "building"})
    return build


def writer(redis_client, build: Build) -> LogWriter:
    config = Config(log_batch_lines=50, log_flush_interval_s=0.005)
    return LogWriter(redis_client, build.id, 1, config)


def fanout(config: Config) -> tuple[LogFanout, list]:
    live, replay = async_redis(config.redis_url), bounded_async_redis(config.redis_url, 2)
    return LogFanout(LogReader(config, live, None), LogReader(config, replay, None), 1 << 20), [live, replay]


def test_followers_joining_while_the_lines_flow_get_each_line_once_in_order(config, redis_client, build):
    log = writer(redis_client, build)
    total = 3000

    def write() -> None:
        for i in range(1, total + 1):
            log.line(f"line {i}")
            if i % 100 == 0:
                log.drain()
        redis_client.hset(keys.build(build.id), fields.STATUS, "success")
        log.end("success")

    async def follow(fan: LogFanout, after: int, delay: float) -> list[tuple[int, str]]:
        await asyncio.sleep(delay)
        return [numbered async for numbered in fan.follow(build, after=after)]

    async def main():
        fan, clients = fanout(config)
        writing = asyncio.create_task(asyncio.to_thread(write))
        # Given 40 followers joining over the whole build, some resuming after a line
        seen = await asyncio.gather(*(follow(fan, after=(i % 4) * 7, delay=i * 0.01) for i in range(40)))
        await writing
        for client in clients:
            await client.aclose()
        return fan, seen

    fan, seen = asyncio.run(main())
    # Then each got every line after its resume point, once and in order
    for i, lines in enumerate(seen):
        after = (i % 4) * 7
        assert lines == [(n, f"line {n}") for n in range(after + 1, total + 1)], f"follower {i}"
    # And the build's live reader is gone with the build
    assert fan.live == {}


def test_the_live_reader_stops_when_its_last_follower_leaves(config, redis_client, build):
    log = writer(redis_client, build)
    log.line("first")
    log.drain()

    async def main():
        fan, clients = fanout(config)
        followers = [fan.follow(build) for _ in range(3)]
        # Given three followers of a live build, each with its first line
        assert [await f.__anext__() for f in followers] == [(1, "first")] * 3
        live = fan.live[build.id]
        # When two leave, the reader goes on; when the last leaves, it stops
        for f in followers[:2]:
            await f.aclose()
        await asyncio.sleep(0.05)
        still_reading = not live.task.done() and fan.live.get(build.id) is live
        await followers[2].aclose()
        await asyncio.sleep(0.05)
        stopped = live.task.cancelled() and fan.live == {}
        for client in clients:
            await client.aclose()
        return still_reading, stopped

    assert asyncio.run(main()) == (True, True)
