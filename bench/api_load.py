"""API throughput under load (wrk in a separate process, the API with 2 uvicorn workers) for
GET build and GET builds?limit=50 (a page the API keeps, and pages it reads from Redis every
time), and list latency at 100,000 builds against 100 builds (pages read from Redis)."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import tempfile
import time
import uuid

from api.store import RecordStore
from bench.farm import Farm, context_archive
from common.models import Build, utc_now
from common.redis_clients import async_redis


def insert_builds(farm: Farm, deployment: dict, count: int) -> list[str]:
    """Build records through the API's own store, in concurrent batches (no worker runs them)."""
    tenant = farm.redis.hget(f"bf:deployment:{deployment['id']}", "tenant").decode()

    async def insert() -> list[str]:
        client = async_redis(farm.config.redis_url)
        store = RecordStore(client)
        ids: list[str] = []
        for start in range(0, count, 100):
            batch = [
                Build(
                    id=str(uuid.uuid4()),
                    deployment_id=deployment["id"],
                    tenant=tenant,
                    number=0,
                    status="success",
                    subdomain=deployment["subdomain"],
                    source_type="archive",
                    dockerfile_path="Dockerfile",
                    created_at=utc_now(),
                    commit_sha="a" * 64,
                )
                for _ in range(min(100, count - start))
            ]
            await asyncio.gather(*(store.create_build(b) for b in batch))
            ids += [b.id for b in batch]
        await client.aclose()
        return ids

    return asyncio.run(insert())


# A wrk script that asks for a page below a new cursor each time (cursors above the newest build
# all give the newest page): every request misses the pages the API keeps (api/build_pages.py).
NEW_CURSOR_EACH_TIME = """
local threads = 0
function setup(thread) threads = threads + 1; thread:set("first", threads * 100000000) end
function init() n = first end
function request() n = n + 1; return wrk.format(nil, wrk.path .. "&cursor=" .. n) end
"""


def wrk(farm: Farm, path: str, seconds: int, script: str | None = None) -> tuple[float, float]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(script or "")
        lua.flush()
        out = subprocess.run(
            [
                "wrk",
                "-t2",
                "-c32",
                f"-d{seconds}s",
                "--latency",
                *(["-s", lua.name] if script else []),
                "-H",
                f"Authorization: Bearer {farm.token}",
                f"{farm.url}/api/v1{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    value, unit = re.search(r"99%\s+([\d.]+)(us|ms|s)", out).groups()
    p99_ms = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    if "Non-2xx" in out:
        raise SystemExit(f"bench: wrk saw errors on {path}:\n{out}")
    return rate, p99_ms


def median_latency_ms(farm: Farm, path: str, samples: int) -> float:
    """Of pages read from Redis: each below a cursor of its own, above the newest build."""
    times = []
    for cursor in range(10**9, 10**9 + samples):
        start = time.perf_counter()
        farm.client.get(f"{path}&cursor={cursor}").raise_for_status()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    seconds = 5 if quick else 15
    big_count = 10_000 if quick else 100_000
    small = farm.archive_deployment(context_archive("FROM scratch\n"))
    big = farm.archive_deployment(context_archive("FROM scratch\n"))
    [one] = insert_builds(farm, small, 1)
    insert_builds(farm, small, 99)
    insert_builds(farm, big, big_count)
    page = f"/deployments/{small['id']}/builds?limit=50"
    get_rate, get_p99 = wrk(farm, f"/deployments/{small['id']}/builds/{one}", seconds)
    list_rate, list_p99 = wrk(farm, page, seconds)
    read_rate, read_p99 = wrk(farm, page, seconds, NEW_CURSOR_EACH_TIME)
    small_ms = median_latency_ms(farm, page, 200)
    big_ms = median_latency_ms(farm, f"/deployments/{big['id']}/builds?limit=50", 200)
    return [
        (
            "API GET build (wrk -t2 -c32)",
            f"**{get_rate:,.0f} req/s**, p99 **{get_p99:.1f} ms**",
            "≥ 3,000 req/s, p99 ≤ 25 ms",
        ),
        (
            "API GET builds?limit=50 (wrk -t2 -c32), a page the API keeps",
            f"**{list_rate:,.0f} req/s**, p99 **{list_p99:.1f} ms**",
            "≥ 2,500 req/s, p99 ≤ 25 ms",
        ),
        (
            "API GET builds?limit=50 (wrk -t2 -c32), each page read from Redis",
            f"**{read_rate:,.0f} req/s**, p99 **{read_p99:.1f} ms**",
            "— (913 req/s, p99 63.8 ms before pages were kept)",
        ),
        (
            f"list latency at {big_count:,} builds / at 100 builds",
            f"{big_ms:.2f} ms / {small_ms:.2f} ms = **{big_ms / small_ms:.2f}**",
            "≤ 1.2",
        ),
    ]
