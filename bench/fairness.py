"""Fair share between tenants (issue 15), with fair scheduling and with it off
(`BUILDFARM_FAIR_SCHEDULING=false`: each queue message runs its own build, first come first
served, the farm before issue 15), in the same run.

Tenant B's queue wait (its build's created → started) while tenant A has 20, 100 (and 500)
builds queued, in median builds of A: real builds of a known length (a `RUN sleep` of RUN_S,
a nonce build arg keeping every build out of the layer cache, then the push), as in the issue's
"Why". B queues once A's builds run; B's wait is taken SAMPLES times (the median and the worst
are reported), each with none of B's builds running, at a random moment within one of A's
builds. Once B's builds have started, A's builds still pending are cancelled through the API,
so that 500 of them need not run. Without fair scheduling B waits behind A's whole backlog:
the wait is capped at FIFO_CAP_S (reported as "> cap"), then B's build and A's pending builds
are cancelled.

The time 200 queued builds of four tenants take to run: builds that fail right after their
claim (no Dockerfile, as in bench/dispatch.py), so that the farm's own cost per build, where
fair scheduling adds its choice, is what is timed. A's builds are of one deployment, run in
parallel (`BUILDFARM_ONE_BUILD_PER_DEPLOYMENT=false`) as builds of many deployments would."""

from __future__ import annotations

import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.dispatch import started_epoch
from bench.farm import BASE_IMAGE, Farm, context_archive
from common.records.builds import tenant_counts
from common.records.call import SyncRunner
from common.tokens import create_token

MODES = {"fair": "true", "FIFO": "false"}
RUN_S = 1.0
DOCKERFILE = f"FROM {BASE_IMAGE}\nARG NONCE\nRUN echo $NONCE && sleep {RUN_S}\n"
# B's builds measured per backlog with fair scheduling, one after the other (quick: 2).
SAMPLES = 3
# The longest B's one build waits without fair scheduling before it is given up (quick: 15 s).
FIFO_CAP_S = 30.0
# A's builds that run before B queues: the engine is warm and both slots are A's.
A_STARTED_FIRST = 4


class _Tenant:
    """A tenant of the bench with its client and one deployment: of real builds (DOCKERFILE), or
    of builds that fail at once (`real=False`)."""

    def __init__(self, farm: Farm, real: bool = True) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        token = create_token(farm.redis, self.name, "bench")
        self.client = httpx.Client(
            base_url=f"{farm.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        self.records = SyncRunner(farm.redis)
        archive = context_archive(DOCKERFILE if real else f"FROM {BASE_IMAGE}\n")
        # Without `real`, builds fail right after their claim: the Dockerfile is not where it is said.
        missing = {} if real else {"dockerfile_path": "missing/Dockerfile"}
        self.deployment = farm.archive_deployment(archive, self.client, **missing)
        self.path = f"/deployments/{self.deployment['id']}/builds"

    def deploy(self) -> dict:
        nonce = {"build_args": {"NONCE": uuid.uuid4().hex}}
        response = self.client.post(f"/deployments/{self.deployment['id']}/deploy", json=nonce)
        response.raise_for_status()
        return response.json()

    def queue(self, count: int) -> list[str]:
        with ThreadPoolExecutor(8) as pool:
            return [build["id"] for build in pool.map(lambda _: self.deploy(), range(count))]

    def get(self, build_id: str) -> dict:
        return self.client.get(f"{self.path}/{build_id}").json()

    def cancel(self, build_ids: list[str]) -> None:
        """Cancels the builds still pending (a running one is let end, a finished one says 409)."""
        with ThreadPoolExecutor(8) as pool:
            builds = list(pool.map(self.get, build_ids))
            pending = [build["id"] for build in builds if build["status"] == "pending"]
            list(pool.map(lambda b: self.client.post(f"{self.path}/{b}/cancel"), pending))

    def counts(self):
        return self.records.run(tenant_counts(self.name))

    def idle(self) -> bool:
        counts = self.counts()
        return counts.queued == 0 and counts.running == 0

    def durations(self) -> list[float]:
        """started → finished of the tenant's builds that succeeded (of its last 100)."""
        builds = self.client.get(self.path, params={"limit": 100, "status": "success"}).json()
        return [_seconds(b["started_at"], b["finished_at"]) for b in builds]


def _seconds(start: str, end: str) -> float:
    return started_epoch({"started_at": end}) - started_epoch({"started_at": start})


def _wait(predicate, timeout: float = 600, poll_s: float = 0.005) -> bool:
    """Waits for the predicate; False if it did not hold within the timeout."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll_s)
    return True


def _started(tenant: _Tenant, build_id: str, cap_s: float) -> float | None:
    """The build's wait (created → started, s), once it started; None if not within cap_s."""
    found = {}

    def started() -> bool:
        found.update(tenant.get(build_id))
        return found["status"] != "pending"

    if not _wait(started, cap_s, poll_s=0.05) or not found["started_at"]:
        return None
    return _seconds(found["created_at"], found["started_at"])


def _drain(farm: Farm, *tenants: _Tenant) -> None:
    """Waits for the tenants' builds to end and the queue's messages to be taken, then stops the
    workers: nothing of this measurement is left for the next one."""
    queue = f"dramatiq:{farm.config.queue_name}"
    if not _wait(lambda: all(t.idle() for t in tenants) and farm.redis.llen(queue) == 0):
        raise SystemExit("bench: timed out waiting for the builds")
    farm.stop_workers()


def _b_wait(
    farm: Farm, mode: str, backlog: int, samples: int, cap_s: float
) -> tuple[list[float | None], float, int]:
    """B's waits (s; None: not started within cap_s), A's median build (s), and A's builds still
    queued when B queued its first."""
    a, b = _Tenant(farm), _Tenant(farm)
    a_builds = a.queue(backlog)
    farm.start_workers(processes=1, threads=2, BUILDFARM_FAIR_SCHEDULING=MODES[mode])
    _wait(lambda: a.counts().queued <= backlog - A_STARTED_FIRST)
    queued = a.counts().queued
    cycle = max(a.durations(), default=RUN_S)
    waits: list[float | None] = []
    for _ in range(samples if mode == "fair" else 1):
        # B has nothing running (a tenant with a running build shares the slots, rightly), and
        # queues at a random moment of A's builds.
        _wait(b.idle)
        time.sleep(random.uniform(0, cycle))
        mine = b.deploy()
        waits.append(_started(b, mine["id"], cap_s))
        if waits[-1] is None:
            b.cancel([mine["id"]])
            break
    a.cancel(a_builds)
    _drain(farm, a, b)
    return waits, statistics.median(a.durations()), queued


def _throughput(farm: Farm, mode: str, count: int) -> float:
    """Seconds from the workers' start to the end of `count` builds queued by four tenants."""
    tenants = [_Tenant(farm, real=False) for _ in range(4)]
    for tenant in tenants:
        tenant.queue(count // len(tenants))
    started = time.monotonic()
    farm.start_workers(processes=1, threads=2, BUILDFARM_FAIR_SCHEDULING=MODES[mode])
    _wait(lambda: all(tenant.idle() for tenant in tenants))
    elapsed = time.monotonic() - started
    _drain(farm, *tenants)
    return elapsed


def _in_builds(wait: float | None, median: float, cap_s: float) -> str:
    if wait is None:
        return f"> {cap_s:.0f} s (> {cap_s / median:.0f} median builds, capped)"
    return f"{wait:.2f} s = {wait / median:.2f} median builds"


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    farm.env["BUILDFARM_ONE_BUILD_PER_DEPLOYMENT"] = "false"
    rows = []
    samples, cap_s = (2, FIFO_CAP_S / 2) if quick else (SAMPLES, FIFO_CAP_S)
    for backlog in (20, 100) if quick else (20, 100, 500):
        found = {mode: _b_wait(farm, mode, backlog, samples, cap_s) for mode in MODES}
        (waits, median, queued), (fifo, fifo_median, _) = found["fair"], found["FIFO"]
        ratios = sorted(wait / median for wait in waits)
        rows.append(
            (
                f"tenant B's queue wait, A with {backlog} builds queued, {RUN_S:.0f} s RUN builds "
                f"(fair, {len(waits)} builds of B; FIFO baseline)",
                f"**{statistics.median(ratios):.2f} median builds** (worst {ratios[-1]:.2f}; "
                f"waits {', '.join(f'{w:.2f}' for w in sorted(waits))} s; A's median build "
                f"{median:.2f} s, A had {queued} queued); FIFO {_in_builds(fifo[0], fifo_median, cap_s)}",
                "≤ 1 median build, flat in A's backlog",
            )
        )
    count = 100 if quick else 200
    times = {mode: _throughput(farm, mode, count) for mode in MODES}
    rows.append(
        (
            f"{count} queued builds of 4 tenants, failing at once, workers' start → last end "
            "(fair; FIFO baseline)",
            f"**{times['fair']:.2f} s**; FIFO {times['FIFO']:.2f} s "
            f"({times['fair'] / times['FIFO'] - 1:+.1%})",
            "within 5% of FIFO",
        )
    )
    return rows
