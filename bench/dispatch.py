"""Dispatch latency: POST deploy → the build is `building` (its started_at), with idle workers.
The builds fail right after their claim (no Dockerfile), so workers stay idle between them."""

from __future__ import annotations

import time
from datetime import datetime

from bench.farm import BASE_IMAGE, Farm, context_archive, percentile


def started_epoch(build: dict) -> float:
    return datetime.fromisoformat(build["started_at"].replace("Z", "+00:00")).timestamp()


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    count = 50 if quick else 200
    farm.start_workers(processes=1, threads=2)
    deployment = farm.archive_deployment(
        context_archive(f"FROM {BASE_IMAGE}\n"), dockerfile_path="missing/Dockerfile"
    )
    latencies = []
    for _ in range(count + 5):
        sent = time.time()
        build = farm.deploy(deployment)
        done = farm.wait_done(build, poll_s=0.002)
        latencies.append((started_epoch(done) - sent) * 1000)
    latencies = latencies[5:]  # the first builds warm the worker's connections up
    farm.stop_workers()
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    return [
        (
            f"dispatch latency POST → building ({count} builds)",
            f"p50 **{p50:.1f} ms**, p99 **{p99:.1f} ms**",
            "p50 ≤ 15 ms, p99 ≤ 60 ms",
        )
    ]
