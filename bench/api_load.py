"""API throughput under load (wrk in a separate process, the API with 2 uvicorn workers) for
GET build and GET builds?limit=50, and list latency at 100,000 builds against 100 builds."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
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


def wrk(farm: Farm, path: str, seconds: int) -> tuple[float, float]:
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            "-c32",
            f"-d{seconds}s",
            "--latency",
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
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        farm.client.get(path).raise_for_status()
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
    get_rate, get_p99 = wrk(farm, f"/deployments/{small['id']}/builds/{one}", seconds)
    list_rate, list_p99 = wrk(farm, f"/deployments/{small['id']}/builds?limit=50", seconds)
    small_ms = median_latency_ms(farm, f"/deployments/{small['id']}/builds?limit=50", 200)
    big_ms = median_latency_ms(farm, f"/deployments/{big['id']}/builds?limit=50", 200)
    return [
        (
            "API GET build (wrk -t2 -c32)",
            f"**{get_rate:,.0f} req/s**, p99 **{get_p99:.1f} ms**",
            "≥ 3,000 req/s, p99 ≤ 25 ms",
        ),
        (
            "API GET builds?limit=50 (wrk -t2 -c32)",
            f"**{list_rate:,.0f} req/s**, p99 **{list_p99:.1f} ms**",
            "≥ 2,500 req/s, p99 ≤ 25 ms",
        ),
        (
            f"list latency at {big_count:,} builds / at 100 builds",
            f"{big_ms:.2f} ms / {small_ms:.2f} ms = **{big_ms / small_ms:.2f}**",
            "≤ 1.2",
        ),
    ]
