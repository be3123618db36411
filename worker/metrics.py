"""Prometheus metrics of the build workers: one endpoint per host, summing its processes.

As in Dramatiq's own middleware (dramatiq.middleware.prometheus.Prometheus), every worker
process counts into files of prometheus_client's multiprocess mode (set up in
`after_process_boot`, before prometheus_client is imported) and a process the master forks
serves their sum. Unlike that middleware's one /tmp/dramatiq-prometheus, which every Dramatiq on
the host shares and nothing empties (two workers on one host would add up each other's counts, a
restart would start from the last run's), each run has its own directory (common/metrics_dir.py),
which the fork removes when it stops; a port already taken is a warning, not a crash of the fork;
the series are the farm's (builds, not messages). worker/middleware/metrics.py sets them up and
serves them. The recording functions below never raise (a build must not fail over a metric) and
do nothing where metrics are off or not set up (tests that call the pipeline in-process).
"""

from __future__ import annotations

import logging

from common.models import TERMINAL_STATUSES, Build, BuildStatus, ErrorKind
from worker.build_types import ENGINE, REGISTRY, S3

logger = logging.getLogger("buildfarm.metrics")

KIND = "worker"
DURATION_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600, float("inf"))
STEP_BUCKETS = (1, 2, 5, 10, 20, 50, 100, float("inf"))
INTEGRATION_KINDS = ("notification", "commit_status")
# The parts of the farm a worker may not reach (worker/build_types.py), as labels.
PART_LABELS = {ENGINE: "engine", REGISTRY: "registry", S3: "s3"}
QUEUE_WAIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, float("inf"))


class _Series:
    def __init__(self) -> None:
        import prometheus_client as prom

        self.builds = prom.Counter(
            "buildfarm_builds", "Builds this host's workers ended, by final status", ["status"], registry=None
        )
        self.failures = prom.Counter(
            "buildfarm_build_failures",
            "Builds this host's workers ended without success, by whose fault (error_kind)",
            ["error_kind"],
            registry=None,
        )
        self.duration = prom.Histogram(
            "buildfarm_build_duration_seconds",
            "From the claim of the attempt that ended the build to its final status",
            ["status"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.queue_wait = prom.Histogram(
            "buildfarm_build_queue_wait_seconds",
            "From a build's created_at to its first start (started_at)",
            buckets=QUEUE_WAIT_BUCKETS,
            registry=None,
        )
        self.tenant_queue_wait = prom.Histogram(
            "buildfarm_tenant_queue_wait_seconds",
            "From a build's created_at to its first start (started_at), by the build's tenant",
            ["tenant"],
            buckets=QUEUE_WAIT_BUCKETS,
            registry=None,
        )
        self.phases = prom.Histogram(
            "buildfarm_build_phase_seconds",
            "Time of a build's phases: source (fetch or stream), build, push (queued: queue_wait)",
            ["phase"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.steps = prom.Histogram(
            "buildfarm_build_steps",
            "Dockerfile steps of a build: all of them, and those taken from the cache",
            ["kind"],
            buckets=STEP_BUCKETS,
            registry=None,
        )
        self.running = prom.Gauge(
            "buildfarm_builds_running",
            "Builds this host's workers are running (fetching, building, pushing)",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.takeovers = prom.Counter(
            "buildfarm_lease_takeovers",
            "Builds this host took over from an attempt whose lease had expired (or that was handed back)",
            registry=None,
        )
        self.log_bytes = prom.Counter(
            "buildfarm_log_bytes_archived", "Bytes of build logs uploaded to the archive", registry=None
        )
        self.archive_failures = prom.Counter(
            "buildfarm_log_archive_failures", "Log uploads that failed (retried later)", registry=None
        )
        self.integrations = prom.Counter(
            "buildfarm_integration_requests",
            "Requests to integrations (notification deliveries, commit status reports), by outcome",
            ["kind", "outcome"],
            registry=None,
        )
        self.parts_down = prom.Gauge(
            "buildfarm_worker_parts_down",
            "Worker processes of this host that claim no build: a part of the farm did not answer them",
            ["part"],
            multiprocess_mode="livesum",
            registry=None,
        )
        # Every series exists from the start (at 0), and every file of this process too.
        for status in sorted(TERMINAL_STATUSES):
            self.builds.labels(status)
            self.duration.labels(status)
        for kind in ErrorKind:
            self.failures.labels(kind.value)
        for kind in INTEGRATION_KINDS:
            for outcome in ("delivered", "failed"):
                self.integrations.labels(kind, outcome)
        self.running.set(0)
        for part in PART_LABELS.values():
            self.parts_down.labels(part).set(0)


_series: _Series | None = None


def _record(func):
    def safe(*args) -> None:
        if _series is None:
            return
        try:
            func(_series, *args)
        except Exception:  # a metric must never break a build
            logger.exception("metrics: %s failed", func.__name__)

    return safe


@_record
def build_claimed(s: _Series, build: Build, queued_s: float | None) -> None:
    """A build this process just claimed: its queue wait (the build's timings), or a takeover."""
    if build.attempt > 1:
        s.takeovers.inc()
    elif queued_s is not None:
        s.queue_wait.observe(max(0.0, queued_s))
        s.tenant_queue_wait.labels(build.tenant).observe(max(0.0, queued_s))


@_record
def running_builds(s: _Series, delta: int) -> None:
    s.running.inc(delta)


@_record
def build_ended(
    s: _Series, status: BuildStatus, kind: ErrorKind | None = None, duration_s: float | None = None
) -> None:
    s.builds.labels(BuildStatus(status).value).inc()
    if kind is not None:
        s.failures.labels(kind.value).inc()
    if duration_s is not None:
        s.duration.labels(BuildStatus(status).value).observe(duration_s)


# BuildTimings fields and the series they go to: (histogram attribute, label).
_PHASES = {
    "source_s": ("phases", "source"),
    "build_s": ("phases", "build"),
    "push_s": ("phases", "push"),
    "steps": ("steps", "all"),
    "cached_steps": ("steps", "cached"),
}


@_record
def build_phases(s: _Series, values: dict[str, float]) -> None:
    for name, value in values.items():
        series, label = _PHASES[name]
        getattr(s, series).labels(label).observe(value)


@_record
def part_down(s: _Series, part: str, down: bool) -> None:
    s.parts_down.labels(PART_LABELS[part]).set(int(down))


@_record
def log_archived(s: _Series, size: int) -> None:
    s.log_bytes.inc(size)


@_record
def log_archive_failed(s: _Series) -> None:
    s.archive_failures.inc()


@_record
def integration_request(s: _Series, kind: str, answered_2xx: bool) -> None:
    s.integrations.labels(kind, "delivered" if answered_2xx else "failed").inc()


def start_series() -> None:
    """Makes this process's series; call once the multiprocess directory is set."""
    global _series
    _series = _Series()


def series_started() -> bool:
    return _series is not None
