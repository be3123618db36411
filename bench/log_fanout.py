"""Thousands of WebSocket followers of one live build on one API host (2 processes): every
follower gets every line once and in order, Redis clients stay flat, and GET build stays fast
while the lines are fanned out (api/logfanout.py). A probe in a process of its own times GET
build and counts Redis clients and the API's memory meanwhile; the followers' client runs niced
in a process of its own. Baseline, in the same run: the
API as it was before the fan-out (a Redis reader per follower), with fewer followers."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from bench.farm import BASE_IMAGE, ROOT, Farm, children, context_archive, percentile, rss_kib
from common.redis_clients import sync_redis

LINES = 60
LINE_INTERVAL_S = 0.25
# Handshakes in flight at once: more only overflow the API's listen backlog.
CONNECTING = 100


def probe(url: str, token: str, path: str, redis_url: str, api_pid: int, stop, results) -> None:
    """GET build every 20 ms: (time, latency ms, Redis clients, API RSS KiB, failed) until `stop`."""
    redis = sync_redis(redis_url)
    samples = []
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                failed = client.get(path).status_code != 200
            except httpx.HTTPError:
                failed = True
            took = (time.perf_counter() - start) * 1000
            rss = sum(rss_kib(pid) for pid in [api_pid, *children(api_pid)])
            samples.append((time.time(), took, len(redis.client_list()), rss, failed))
            time.sleep(0.02)
    results.put(samples)


async def follow(url: str, headers: dict, gate: asyncio.Semaphore, seen: dict) -> tuple[list[str], int]:
    """Every line until the server closes; notes when it joined and when the first line came."""
    async with gate:
        ws = await connect(url, additional_headers=headers, open_timeout=600, max_size=None)
    seen["joined"].append(time.time())
    lines = []
    try:
        async for message in ws:
            if message == "fan-1":
                seen["first line"].append(time.time())
            elif message == f"fan-{LINES}":
                seen["last line"].append(time.time())
            lines.append(message)
    except ConnectionClosed:
        pass
    return lines, ws.close_code


async def follow_all(url: str, headers: dict, count: int) -> tuple[list, dict]:
    gate, seen = asyncio.Semaphore(CONNECTING), {"joined": [], "first line": [], "last line": []}
    # A follower that failed to connect counts as one that did not get the log.
    followers = (follow(url, headers, gate, seen) for _ in range(count))
    results = await asyncio.gather(*followers, return_exceptions=True)
    return [r if isinstance(r, tuple) else repr(r) for r in results], seen


def followers_process(url: str, headers: dict, count: int, results) -> None:
    """`follow_all` at the lowest CPU priority: the followers' client shares the API's 2 cores
    here, where in production it runs on other hosts; niced, it takes only the CPU that the API
    and the probe leave, so the GET figures are the API's own."""
    os.nice(19)
    results.put(asyncio.run(follow_all(url, headers, count)))


def follow_niced(farm: Farm, build: dict, count: int) -> tuple[list, dict]:
    path = f"/api/v1/deployments/{build['deployment_id']}/builds/{build['id']}/logs/stream"
    url = farm.url.replace("http://", "ws://") + path
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=followers_process, args=(url, {"Authorization": f"Bearer {farm.token}"}, count, queue)
    )
    process.start()
    results = queue.get()
    process.join(30)
    return results


class Probe:
    """`probe` in a process of its own, on a build of `farm`."""

    def __init__(self, farm: Farm, build_path: str) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop, self.queue = context.Event(), context.Queue()
        self.process = context.Process(
            target=probe,
            args=(
                farm.url + "/api/v1",
                farm.token,
                build_path,
                farm.config.redis_url,
                farm.api.pid,
                self.stop,
                self.queue,
            ),
        )
        self.process.start()

    def samples(self) -> list[tuple]:
        self.stop.set()
        samples = self.queue.get(timeout=60)
        self.process.join(30)
        return samples


def lines_build(farm: Farm, wait_s: int) -> tuple[dict, str]:
    """A build that waits `wait_s`, then prints LINES lines, one every LINE_INTERVAL_S."""
    step = f"sleep {wait_s} && for i in $(seq 1 {LINES}); do echo fan-$i; sleep {LINE_INTERVAL_S}; done"
    deployment = farm.archive_deployment(context_archive(f"FROM {BASE_IMAGE}\nCOPY . /src\nRUN {step}\n"))
    build = farm.deploy(deployment)
    return build, f"/deployments/{build['deployment_id']}/builds/{build['id']}"


def unfollowed_get_p99(farm: Farm) -> tuple[float, float]:
    """GET build p99 (ms) while the same lines are printed with no follower, and the host's load:
    what this host gives the API, in the same run."""
    build, build_path = lines_build(farm, 0)
    probe = Probe(farm, build_path)
    farm.wait_done(build, poll_s=0.5)
    samples = probe.samples()
    return percentile([s[1] for s in samples], 99), os.getloadavg()[0]


def measure(farm: Farm, count: int, wait_s: int) -> dict:
    """`count` followers of a build that waits `wait_s` (while they connect), then prints its
    lines; the probe runs meanwhile."""
    build, build_path = lines_build(farm, wait_s)
    probe = Probe(farm, build_path)
    started = time.time()
    results, seen = follow_niced(farm, build, count)
    ended = time.time()
    # Other work on the host moves these figures: its 1-minute load average goes with them.
    load = os.getloadavg()[0]
    samples = probe.samples()
    final = farm.client.get(build_path + "/logs").text.splitlines()
    first_line = min(seen["first line"], default=ended)
    joined = max(seen["joined"], default=first_line)
    last_line = max(seen["last line"], default=ended)
    fanout = [s for s in samples if first_line <= s[0] <= ended]
    # GET build in each phase: the handshakes (CONNECTING at a time), the wait for the first
    # line, the lines until every follower has the last, the closes (the build ended).
    phases = {
        "handshakes": (started, joined),
        "idle": (joined, first_line),
        "lines": (first_line, last_line),
        "closes": (last_line, ended),
    }
    phase_p99 = {
        name: percentile([s[1] for s in samples if start <= s[0] <= end], 99)
        for name, (start, end) in phases.items()
        if any(start <= s[0] <= end for s in samples)
    }
    return {
        "whole": [line for line in final if line.startswith("fan-")]
        == [f"fan-{i}" for i in range(1, LINES + 1)],
        "exact": sum(1 for result in results if result == (final, 1000)),
        "on time": sum(1 for t in seen["joined"] if t < first_line),
        "samples": len(fanout),
        "p99": percentile([s[1] for s in fanout], 99) if fanout else float("nan"),
        "max": max((s[1] for s in fanout), default=float("nan")),
        "failed": sum(1 for s in samples if s[4]),
        "redis": max(s[2] for s in samples),
        "rss": ([s[3] for s in samples if s[0] < started + 1] or [samples[0][3]])[0],
        "rss peak": max(s[3] for s in samples),
        "load": load,
        "phases": ", ".join(f"{name} {p99:.0f} ms" for name, p99 in phase_p99.items()),
        "handshakes s": joined - started,
    }


def api_before_the_fanout(dest: Path) -> Path:
    """This tree as it was before api/logfanout.py came (each follower reading Redis itself)."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "api/logfanout.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[-1]
    archive = subprocess.run(
        ["git", "archive", f"{added}^"], cwd=ROOT, capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    return dest


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    count, baseline_count = (500, 200) if quick else (5000, 1000)
    wait_s = 10 if quick else 60
    farm.start_workers(processes=1, threads=2)
    quiet_p99, quiet_load = unfollowed_get_p99(farm)
    new = measure(farm, count, wait_s)
    # Today's workers do not run what the old API queues (the fair queue came after): the old
    # farm runs its own.
    farm.stop_workers()
    with tempfile.TemporaryDirectory() as tree:
        old_farm = Farm(api_root=api_before_the_fanout(Path(tree)))
        try:
            old_farm.start_workers(processes=1, threads=2)
            old = measure(old_farm, baseline_count, wait_s // 3)
        finally:
            old_farm.close()
    return [
        (
            f"log fan-out: WebSocket followers of one live build ({LINES} lines, 2 API processes) "
            "getting every line once, in order / before (a Redis reader per follower)",
            f"**{new['exact']:,} of {count:,}** ({new['on time']:,} joined before the first line, the "
            f"others replayed it; log whole: {new['whole']}) / {old['exact']:,} of {baseline_count:,}",
            "all",
        ),
        (
            "log fan-out: Redis clients at most, during the same runs",
            f"**{new['redis']}** with {count:,} followers / {old['redis']:,} with {baseline_count:,}",
            "< 100",
        ),
        (
            "log fan-out: GET build while the lines go out (a probe every 20 ms)",
            f"p99 **{new['p99']:.1f} ms**, max {new['max']:.1f} ms ({new['samples']} samples, "
            f"{new['failed']} failed; host load {new['load']:.1f}; p99 by phase: {new['phases']}, the "
            f"handshakes taking {new['handshakes s']:.0f} s) / p99 {old['p99']:.1f} ms, max "
            f"{old['max']:.1f} ms ({old['failed']} failed; host load {old['load']:.1f}); the same lines "
            f"with no follower: p99 {quiet_p99:.1f} ms (host load {quiet_load:.1f})",
            "p99 ≤ 50 ms",
        ),
        (
            "log fan-out: API memory (gunicorn master + 2 workers)",
            f"{new['rss'] / 1024:.0f} → **{new['rss peak'] / 1024:.0f} MiB** with {count:,} followers / "
            f"{old['rss'] / 1024:.0f} → {old['rss peak'] / 1024:.0f} MiB with {baseline_count:,}",
            "reported",
        ),
    ]
