"""Log latency (a line printed by a RUN step → received by a WebSocket client) and log
throughput (a 20,000-line build, end to end), and the archive checked line for line."""

from __future__ import annotations

import subprocess
import time
import uuid

from bench.farm import BASE_IMAGE, LOGS, ROOT, Farm, context_archive, percentile

# Under BuildKit a step's output reaches the farm at most at the engine's 1 MiB/s (README, Known
# limits; beyond, BuildKit drops it): a burst of 20,000 lines of ~47 bytes (0.94 MB) stays whole.
THROUGHPUT_LINES = 20_000
BURSTS = 7


def stamp_binary() -> bytes:
    """A static program printing nanosecond stamps (busybox's `date` has no %N)."""
    out = LOGS / "stamp"
    LOGS.mkdir(parents=True, exist_ok=True)
    subprocess.run(["gcc", "-static", "-O2", "-o", str(out), str(ROOT / "bench" / "stamp.c")], check=True)
    return out.read_bytes()


def latency(farm: Farm, lines: int) -> tuple[float, float]:
    dockerfile = f"FROM {BASE_IMAGE}\nCOPY . /src\nRUN chmod +x /src/stamp && /src/stamp {lines} 500\n"
    deployment = farm.archive_deployment(context_archive(dockerfile, {"stamp": stamp_binary()}))
    build = farm.deploy(deployment)
    delays = []

    def on_line(text: str, received_ns: int) -> None:
        stamp, _, rest = text.partition(" ")
        if rest.startswith("stamp-") and stamp.isdigit():
            delays.append((received_ns - int(stamp)) / 1e6)

    farm.follow(build, on_line)
    if len(delays) != lines:
        raise SystemExit(f"bench: {len(delays)} of {lines} stamped lines received")
    return percentile(delays, 50), percentile(delays, 99)


def throughput(farm: Farm, lines: int) -> tuple[float, bool]:
    pad = "x" * 40
    # The nonce keeps every burst out of the layer cache (each run is a new deployment's build).
    nonce = uuid.uuid4().hex
    dockerfile = f"FROM {BASE_IMAGE}\nCOPY . /src\nRUN echo {nonce} && seq 1 {lines} | sed 's/$/ {pad}/'\n"
    deployment = farm.archive_deployment(context_archive(dockerfile))
    build = farm.deploy(deployment)
    seen: list[int] = []
    first = last = 0

    def on_line(text: str, received_ns: int) -> None:
        nonlocal first, last
        if text.endswith(pad):
            first = first or received_ns
            last = received_ns
            seen.append(int(text.split(" ", 1)[0]))

    done = farm.follow(build, on_line)
    rate = len(seen) / ((last - first) / 1e9) if last > first else 0.0
    archived = _archived(farm, done)
    expected = [f"{i} {pad}" for i in range(1, lines + 1)]
    exact = (
        seen == list(range(1, lines + 1)) and [line for line in archived if line.endswith(pad)] == expected
    )
    return rate, exact


def _archived(farm: Farm, build: dict) -> list[str]:
    key = f"bf:build:{build['id']}"
    deadline = time.monotonic() + 60
    while farm.redis.hget(key, "log_state") != b"archived" and time.monotonic() < deadline:
        time.sleep(0.1)
    from common.s3 import create_s3

    s3 = create_s3(farm.config)
    return (
        s3.get_object(farm.config.logs_bucket, f"{build['deployment_id']}/{build['id']}.log")
        .read()
        .decode()
        .splitlines()
    )


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    farm.start_workers(processes=1, threads=2)
    stamped = 2000 if quick else 10_000
    p50, p99 = latency(farm, stamped)
    lines = THROUGHPUT_LINES
    # One burst lasts about 0.4 s, so one pause of the host moves its rate by a quarter: the
    # median of several bursts, with their range.
    bursts = [throughput(farm, lines) for _ in range(3 if quick else BURSTS)]
    rates = sorted(rate for rate, _ in bursts)
    exact = all(exact for _, exact in bursts)
    farm.stop_workers()
    return [
        (
            f"log latency RUN → WebSocket ({stamped} lines)",
            f"p50 **{p50:.1f} ms**, p99 **{p99:.1f} ms**",
            "p99 ≤ 50 ms",
        ),
        (
            f"log throughput, {lines} lines end to end (median of {len(rates)} builds)",
            f"**{percentile(rates, 50):,.0f} lines/s** ({rates[0]:,.0f}–{rates[-1]:,.0f}); "
            f"archives exact: {exact}",
            "≥ 50,000 lines/s; exact",
        ),
    ]
