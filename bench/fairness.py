"""Fair share between tenants (issue 15): tenant B's queue wait (created → started) for one
build queued while tenant A has 20, 100 (and 500) builds queued, and the time 200 queued builds
of four tenants take to run, with fair scheduling and with it off (`BUILDFARM_FAIR_SCHEDULING=
false`: each queue message runs its own build, first come first served, the farm before issue
15), in the same run. The builds fail right after their claim (no Dockerfile, as in
bench/dispatch.py), so that 500 of them run in seconds: the median build duration the wait is
held against is theirs. A's builds are of one deployment, run in parallel
(`BUILDFARM_ONE_BUILD_PER_DEPLOYMENT=false`) as builds of many deployments would."""

from __future__ import annotations

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


class _Tenant:
    """A tenant of the bench with its client and one deployment whose builds fail at once."""

    def __init__(self, farm: Farm) -> None:
        self.name = f"bench-{uuid.uuid4().hex[:8]}"
        token = create_token(farm.redis, self.name, "bench")
        self.client = httpx.Client(
            base_url=f"{farm.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
        self.records = SyncRunner(farm.redis)
        self.deployment = self.client.post(
            "/deployments",
            json={
                "name": "bench",
                "subdomain": f"bench-{uuid.uuid4().hex[:10]}",
                "source_type": "archive",
                "dockerfile_path": "missing/Dockerfile",
            },
        ).json()
        archive = context_archive(f"FROM {BASE_IMAGE}\n")
        upload = f"/deployments/{self.deployment['id']}/upload"
        self.client.post(upload, files={"archive": ("a.tgz", archive)}).raise_for_status()

    def queue(self, count: int) -> None:
        path = f"/deployments/{self.deployment['id']}/deploy"
        with ThreadPoolExecutor(8) as pool:
            for response in pool.map(lambda _: self.client.post(path), range(count)):
                response.raise_for_status()

    def counts(self):
        return self.records.run(tenant_counts(self.name))

    def idle(self) -> bool:
        counts = self.counts()
        return counts.queued == 0 and counts.running == 0

    def durations(self) -> list[float]:
        builds = self.client.get(f"/deployments/{self.deployment['id']}/builds", params={"limit": 100}).json()
        return [_seconds(b["started_at"], b["finished_at"]) for b in builds if b["started_at"]]


def _seconds(start: str, end: str) -> float:
    return started_epoch({"started_at": end}) - started_epoch({"started_at": start})


def _wait(predicate, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit("bench: timed out waiting for the builds")
        time.sleep(0.005)


def _b_wait(farm: Farm, mode: str, backlog: int) -> tuple[float, float, int]:
    """B's wait (s), the median build (s), and A's queued builds when B queued its one."""
    a, b = _Tenant(farm), _Tenant(farm)
    a.queue(backlog)
    farm.start_workers(processes=1, threads=2, BUILDFARM_FAIR_SCHEDULING=MODES[mode])
    _wait(lambda: a.counts().queued < backlog)
    queued = a.counts().queued
    mine = b.client.post(f"/deployments/{b.deployment['id']}/deploy").json()
    _wait(b.idle)
    done = b.client.get(f"/deployments/{mine['deployment_id']}/builds/{mine['id']}").json()
    _wait(a.idle)
    farm.stop_workers()
    wait = started_epoch(done) - started_epoch({"started_at": done["created_at"]})
    return wait, statistics.median(a.durations()), queued


def _throughput(farm: Farm, mode: str, count: int) -> float:
    """Seconds from the workers' start to the end of `count` builds queued by four tenants."""
    tenants = [_Tenant(farm) for _ in range(4)]
    for tenant in tenants:
        tenant.queue(count // len(tenants))
    started = time.monotonic()
    farm.start_workers(processes=1, threads=2, BUILDFARM_FAIR_SCHEDULING=MODES[mode])
    _wait(lambda: all(tenant.idle() for tenant in tenants))
    elapsed = time.monotonic() - started
    farm.stop_workers()
    return elapsed


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    farm.env["BUILDFARM_ONE_BUILD_PER_DEPLOYMENT"] = "false"
    rows = []
    for backlog in (20, 100) if quick else (20, 100, 500):
        found = {mode: _b_wait(farm, mode, backlog) for mode in MODES}
        fair, fifo = found["fair"], found["FIFO"]
        rows.append(
            (
                f"tenant B's queue wait, A with {backlog} builds queued (fair; FIFO baseline)",
                f"**{fair[0] * 1000:.0f} ms** = {fair[0] / fair[1]:.1f} median builds "
                f"({fair[1] * 1000:.0f} ms), A had {fair[2]} queued; FIFO {fifo[0] * 1000:.0f} ms "
                f"= {fifo[0] / fifo[1]:.1f} median builds, A had {fifo[2]} queued",
                "≤ 1 median build, flat in A's backlog",
            )
        )
    count = 100 if quick else 200
    times = {mode: _throughput(farm, mode, count) for mode in MODES}
    rows.append(
        (
            f"{count} queued builds of 4 tenants, workers' start → last end (fair; FIFO baseline)",
            f"**{times['fair']:.2f} s**; FIFO {times['FIFO']:.2f} s "
            f"({times['fair'] / times['FIFO'] - 1:+.1%})",
            "within 5% of FIFO",
        )
    )
    return rows
