"""Memory: the worker's RSS while a build prints a huge log (bounded, not growing with the
log), Redis memory per finished (archived) build, and per live log line."""

from __future__ import annotations

import threading
import time
import uuid

from bench.farm import BASE_IMAGE, Farm, children, context_archive, rss_kib
from common.config import Config
from common.records import keys
from worker.logwriter import LogWriter

LINE = "x" * 99  # 100 bytes with its newline


def peak_worker_rss_mib(farm: Farm, log_bytes: int) -> tuple[float, float]:
    worker = farm.start_workers(processes=1, threads=1)
    [child] = children(worker.pid)
    dockerfile = f"FROM {BASE_IMAGE}\nCOPY . /src\nRUN yes {LINE} | head -c {log_bytes}\n"
    deployment = farm.archive_deployment(context_archive(dockerfile))
    baseline = rss_kib(child)
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_kib(child))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    build = farm.wait_done(farm.deploy(deployment), poll_s=0.2, timeout=1800)
    done.set()
    sampler.join()
    farm.stop_workers()
    if build["status"] != "success":
        raise SystemExit(f"bench: big-log build ended {build['status']}: {build['error']}")
    return baseline / 1024, peak[0] / 1024


def redis_bytes_per_finished_build(farm: Farm, count: int) -> float:
    """What finished builds keep in Redis, from Redis's own accounting (MEMORY USAGE): their
    record hashes and their entries in the deployment's indexes. (A used_memory delta over a
    few builds is dominated by the keyspace's table doubling and the AOF buffer.)"""
    farm.start_workers(processes=1, threads=2)
    deployment = farm.archive_deployment(context_archive(f"FROM {BASE_IMAGE}\nCOPY . /app\nRUN true\n"))
    builds = [farm.wait_done(farm.deploy(deployment), poll_s=0.01) for _ in range(count)]
    deadline = time.monotonic() + 60
    while any(farm.redis.hget(keys.build(b["id"]), "log_state") != b"archived" for b in builds):
        if time.monotonic() > deadline:
            raise SystemExit("bench: logs not archived")
        time.sleep(0.2)
    farm.stop_workers()
    if any(b["status"] != "success" for b in builds):
        raise SystemExit("bench: a build failed")
    records = sum(farm.redis.memory_usage(keys.build(b["id"]), samples=0) for b in builds)
    indexes = sum(
        farm.redis.memory_usage(name, samples=0) or 0
        for name in (
            keys.deployment_builds(deployment["id"]),
            keys.deployment_builds(deployment["id"], "success"),
        )
    )
    leftovers = [
        k for b in builds for k in farm.redis.keys(f"*{b['id']}*") if k != keys.build(b["id"]).encode()
    ]
    if leftovers:
        raise SystemExit(f"bench: finished builds left keys behind: {leftovers[:5]}")
    return (records + indexes) / count


def redis_bytes_per_live_line(farm: Farm, lines: int) -> float:
    build_id = str(uuid.uuid4())
    farm.redis.hset(keys.build(build_id), mapping={"attempt": "1"})
    config = Config(log_max_bytes=1 << 30, log_batch_lines=500, log_flush_interval_s=0.02)
    log = LogWriter(farm.redis, build_id, 1, config)
    for i in range(lines):
        log.line(f"{i:08d} {LINE[:50]}")
    log.drain()
    size = farm.redis.memory_usage(keys.build_log(build_id), samples=0)
    farm.redis.delete(keys.build_log(build_id), keys.build(build_id))
    return size / lines


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    sizes = [100_000_000, 200_000_000] if quick else [100_000_000, 1_000_000_000]
    rss = {size: peak_worker_rss_mib(farm, size) for size in sizes}
    shown = "; ".join(
        f"{size / 1e6:,.0f} MB log: {base:.0f} → **{peak:.0f} MiB** peak"
        for size, (base, peak) in rss.items()
    )
    per_build = redis_bytes_per_finished_build(farm, 10 if quick else 100)
    per_line = redis_bytes_per_live_line(farm, 20_000 if quick else 100_000)
    return [
        ("worker RSS during a huge-log build", shown, "bounded, no growth with log size"),
        ("Redis memory per finished build (archived)", f"**{per_build:,.0f} bytes**", "≤ 2 KiB"),
        ("Redis memory per live log line (60-byte lines)", f"{per_line:.0f} bytes", "—"),
    ]
