"""Scale-out: throughput of many small builds with 1, 2 and 4 worker processes (2 threads
each), and with one process of 1, 2 and 4 threads, as builds per minute, all builds queued at
once, each of its own deployment."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

from bench.farm import BASE_IMAGE, Farm, context_archive
from bench.overhead import unpack

DOCKERFILE = f"FROM {BASE_IMAGE}\nCOPY . /app\nRUN echo built && ls /app\n"


GROUPS = {
    "docker engine": (
        "dockerd",
        "containerd",
        "containerd-shim",
        "containerd-shim-runc-v2",
        "runc",
        "docker-init",
    ),
    "registry": ("docker-registry",),
    "workers": ("dramatiq",),
    "redis": ("redis-server",),
    "api": ("gunicorn",),
}


def cpu_seconds_by_group() -> dict[str, float]:
    """CPU time used so far by the processes of each part of the farm (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = dict.fromkeys(GROUPS, 0.0)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        # utime + stime, and cutime + cstime: the short-lived processes (runc, the RUN steps)
        # are gone by the second reading, but their time lives on in the parent that reaped them.
        seconds = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
        program = Path(cmdline[1].decode(errors="replace")).name if len(cmdline) > 1 else ""
        for group, names in GROUPS.items():
            if name in names or program in names:
                used[group] += seconds
    return used


def builds_per_minute(farm: Farm, processes: int, threads: int, count: int) -> tuple[float, dict[str, float]]:
    deployments = [farm.archive_deployment(context_archive(DOCKERFILE)) for _ in range(count)]
    farm.start_workers(processes=processes, threads=threads)
    cpu_before = cpu_seconds_by_group()
    start = time.perf_counter()
    builds = [farm.deploy(d) for d in deployments]
    for build in builds:
        done = farm.wait_done(build, poll_s=0.05)
        if done["status"] != "success":
            raise SystemExit(f"bench: scale-out build ended {done['status']}: {done['error']}")
    elapsed = time.perf_counter() - start
    cpu = {
        group: max(0.0, used - cpu_before[group]) / elapsed for group, used in cpu_seconds_by_group().items()
    }
    farm.stop_workers()
    return count / elapsed * 60, cpu


def direct_builds_per_minute(farm: Farm, parallel: int, count: int) -> float:
    """The baseline: the same builds by the docker CLI, `parallel` at a time (no farm)."""
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with tempfile.TemporaryDirectory() as workdir:
        contexts = []
        for i in range(count):
            context = Path(workdir, str(i))
            context.mkdir()
            unpack(context_archive(DOCKERFILE), context)
            contexts.append(context)
        start = time.perf_counter()
        for first in range(0, count, parallel):
            running = [
                subprocess.Popen(
                    ["docker", "build", "-q", "-t", f"bench-direct-{i}", str(c)],
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for i, c in enumerate(contexts[first : first + parallel], start=first)
            ]
            if any(p.wait() != 0 for p in running):
                raise SystemExit("bench: a direct docker build failed")
        return count / (time.perf_counter() - start) * 60


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    count = 24 if quick else 200
    direct = {n: direct_builds_per_minute(farm, n, 16 if quick else 48) for n in (1, 8)}
    results = {p: builds_per_minute(farm, p, 2, count) for p in (1, 2, 4)}
    rates = {p: rate for p, (rate, _) in results.items()}
    shown = ", ".join(f"{p} process(es): **{rate:.0f}**" for p, rate in rates.items())
    by_threads = {t: builds_per_minute(farm, 1, t, count)[0] for t in (1, 4)} | {2: rates[1]}
    threads_shown = ", ".join(f"{t} thread(s): **{by_threads[t]:.0f}**" for t in (1, 2, 4))
    busiest = ", ".join(
        f"{group} {cores:.2f}" for group, cores in sorted(results[4][1].items(), key=lambda kv: -kv[1])
    )
    return [
        (
            f"scale-out, {count} small builds, builds/min (2 threads per process)",
            f"{shown}; 4 vs 1: {rates[4] / rates[1]:.2f}×",
            "report where it stops scaling",
        ),
        (
            f"scale-out, {count} small builds, builds/min (1 process)",
            f"{threads_shown}; 4 vs 1: {by_threads[4] / by_threads[1]:.2f}×",
            "report where it stops scaling",
        ),
        ("cores busy during the 4-process run", busiest, f"{os.cpu_count()} cores in all"),
        (
            "baseline: `docker build` by the CLI, builds/min (no push)",
            f"1 at a time: {direct[1]:.0f}, 8 at a time: {direct[8]:.0f}",
            "the engine's own ceiling",
        ),
    ]
