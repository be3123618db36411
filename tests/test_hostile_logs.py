"""A tenant's build that attacks the log: a line that never ends, and a flood of empty lines.
Real builds; the floods with the classic builder, which passes a step's output at any speed
(BuildKit's engine drops what comes faster than 1 MiB/s: README, Known limits)."""

from __future__ import annotations

import time

import pytest

from common.logformat import CONTINUED
from common.records import keys
from tests import farm
from tests.conftest import alone_on_the_queue

pytestmark = pytest.mark.e2e

# Small enough that a million empty lines pass it (32 MB by the cap's count, common/logformat.py)
LOG_CAP = 16 * 1024 * 1024
MAX_LINE = 64 * 1024


@pytest.fixture
def capped_classic_worker(worker, logs_dir):
    """A classic worker with the test's log cap and the default line limit, alone on the queue."""
    env = {"BUILDFARM_BUILDER": "classic", "BUILDFARM_LOG_MAX_BYTES": str(LOG_CAP)}
    with alone_on_the_queue(worker, logs_dir, "hostile-logs", **env) as process:
        yield process


def watch(client, worker, step: str, each_round=lambda build_id: None) -> tuple[dict, float, float]:
    """Runs a build of one RUN step, calling `each_round` with its id while it runs; returns it,
    the growth of the worker's RSS at its peak (MiB) and the seconds its build step took."""
    deployment = farm.archive_deployment(client, farm.context_archive(farm.dockerfile(step)))
    before = peak = farm.worker_children_rss_kib(worker)
    build, deadline = farm.deploy(client, deployment), time.monotonic() + 120
    while (current := client.get(farm.build_path(build)).json())["status"] in ("pending", "building"):
        assert time.monotonic() < deadline, "the build did not end within 120 s"
        peak = max(peak, farm.worker_children_rss_kib(worker))
        each_round(build["id"])
        time.sleep(0.05)
    return current, (peak - before) / 1024, current["timings"]["build_s"]


def line_without_newline(size: int) -> str:
    return f"head -c {size} /dev/zero | tr '\\0' x"


def test_a_200_mib_line_without_newline_keeps_the_workers_memory_flat_and_time_linear(
    client, capped_classic_worker, config, s3, redis_client
):
    # Given a tenant whose RUN step prints 50 MiB, then 200 MiB, without a newline
    small, small_growth, small_s = watch(client, capped_classic_worker, line_without_newline(50 * 2**20))
    large, large_growth, large_s = watch(client, capped_classic_worker, line_without_newline(200 * 2**20))
    print(
        f"\n50 MiB line: build step {small_s:.1f} s, worker RSS +{small_growth:.1f} MiB; "
        f"200 MiB line: {large_s:.1f} s, +{large_growth:.1f} MiB"
    )
    # Then both builds succeed, their logs cut at the cap
    assert (small["status"], large["status"]) == ("success", "success"), (small, large)
    # and the worker's memory stays flat: no line is held whole (before: +85 MiB for a 32 MiB line)
    assert large_growth < 30, f"the worker's memory grew by {large_growth:.1f} MiB"
    # and 4 times the output takes about 4 times as long, not 16 (before: 2 × the line, 4 × the time)
    assert large_s < 8 * small_s, f"50 MiB: {small_s:.1f} s, 200 MiB: {large_s:.1f} s"
    # And the archived log shows the line in pieces of 64 KiB, each after the first marked
    lines = farm.archived_log(redis_client, s3, config, large, 60).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("x"))
    assert lines[first] == "x" * MAX_LINE
    assert lines[first + 1] == CONTINUED + "x" * MAX_LINE
    pieces = [line for line in lines if line.startswith(CONTINUED)]
    assert len(pieces) > 100 and all(line == CONTINUED + "x" * MAX_LINE for line in pieces)
    assert any(line.startswith("[log truncated") for line in lines)


def test_a_million_empty_lines_hold_no_more_than_the_cap_in_redis(
    client, capped_classic_worker, config, s3, redis_client
):
    # Given a tenant whose RUN step prints a million empty lines (16 MB in Redis: 16 bytes each)
    peak = [0]

    def measure(build_id: str) -> None:
        peak[0] = max(peak[0], redis_client.memory_usage(keys.build_log(build_id), samples=0) or 0)

    # (its log is measured while the build runs: the stream goes once the log is archived)
    build, _, _ = watch(client, capped_classic_worker, "yes '' | head -n 1000000; sleep 3", measure)
    print(f"\nthe log of a million empty lines took at most {peak[0]} bytes of Redis (cap {LOG_CAP})")
    # Then the log stopped at the cap in Redis memory, and says so
    assert LOG_CAP / 3 < peak[0] <= LOG_CAP
    assert build["status"] == "success", build
    # (read from the archive: GET /logs of half a million lines failed once on a loaded host, the
    # API closing the response early, cause not found)
    last = farm.archived_log(redis_client, s3, config, build, 60).splitlines()[-2:]
    assert last[0].startswith(f"[log truncated: it reached its cap of {LOG_CAP} bytes of Redis memory")
    assert last[1] == "Build success"


def test_a_long_line_under_buildkit_reaches_the_log_in_pieces_under_its_step(
    client, worker, config, s3, redis_client
):
    # Given a RUN step printing a 300 KB line without a newline, within BuildKit's 1 MiB/s
    deployment = farm.archive_deployment(
        client, farm.context_archive(farm.dockerfile(f"{line_without_newline(300_000)}; echo; echo after"))
    )
    build = farm.wait_for_status(client, farm.deploy(client, deployment))
    assert build["status"] == "success", build
    # Then the log has it in pieces of at most 64 KiB, the first without the step's prefix, and
    # the step's next line after them
    lines = farm.archived_log(redis_client, s3, config, build, 60).splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("x"))
    pieces = [lines[first], *(line.removeprefix(CONTINUED) for line in lines[first + 1 : first + 5])]
    assert all(len(piece) <= MAX_LINE for piece in pieces) and "".join(pieces) == "x" * 300_000
    marked = [line.startswith(CONTINUED) for line in lines[first : first + 6]]
    assert marked == [False, True, True, True, True, False]
    assert lines[first + 5] == "after"
