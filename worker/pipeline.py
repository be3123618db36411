"""One build, start to end: claim → source and build (worker/build_step.py) → push → finish →
archive; its start and end announced to its deployment's integrations (worker/integrations.py). A
part of the farm this worker did not reach within its bound (worker/infra_retry.py, an engine
gone) hands the build back while it has attempts left."""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import msgspec
import redis

from common import contract
from common.build_secrets import SecretCipher
from common.config import ConfigError
from common.integrations import ENDED, FAILED, STARTED
from common.logging_json import bind_build, build_scope
from common.models import Build, BuildStatus, ErrorKind, json_text, utc_now
from common.records.builds import Claim, LostClaim
from common.registry_auth import registry_login
from common.s3 import unanswered
from common.tenant_limits import farm_defaults
from worker import failures, metrics
from worker.build_step import build_step
from worker.build_types import REGISTRY, S3, EngineGone, Unreachable
from worker.buildkit import BuildKitRun
from worker.context import WorkerContext
from worker.disk_space import low_free_disk, scratch_over_budget
from worker.docker_build import create_docker, engine_answers, push_image, registry_down
from worker.engine_watch import EngineMark
from worker.infra_retry import Retry, duration, retry_within
from worker.integrations import announce
from worker.log_archive import archive_log
from worker.logwriter import LogWriter
from worker.scratch import scratch_folder
from worker.step_guard import steps_stopped_explained

logger = logging.getLogger("buildfarm.worker")

WATCH_INTERVAL_S = 0.25
HEARTBEAT_INTERVAL_S = 10.0
# A build waiting behind another build of its deployment is offered again after this delay.
BUSY_RETRY_MS = 1000
# A build a worker short of disk leaves in the queue is offered again after this delay (to any
# worker).
LOW_DISK_RETRY_MS = 5000
# The build's scratch folder is measured this often against BUILDFARM_BUILD_DISK_BYTES while its
# source arrives (a clone); worker/source.py measures it once more when the source is all there.
SCRATCH_CHECK_INTERVAL_S = 2.0
# An engine gone during a build is asked this often whether it answers again.
ENGINE_CHECK_INTERVAL_S = 1.0


@dataclass(frozen=True)
class Stop:
    """Why the watcher stopped a build: it ends with `status`, `kind` and `reason`, or, with no
    status, it is handed back (shutdown) or abandoned (its claim was lost)."""

    reason: str
    status: BuildStatus | None = None
    kind: ErrorKind | None = None
    hand_back: bool = False


class _Stopped(Exception):
    """Raised in the build thread when the watcher has stopped the build."""


class _Watcher(threading.Thread):
    """Keeps the claim of a running build alive (lease and Dramatiq heartbeat) and stops the
    build from outside — on cancel, timeout, shutdown or a lost claim — by cutting the daemon
    stream the build thread is blocked on."""

    def __init__(self, ctx: WorkerContext, build: Build, abort) -> None:
        super().__init__(name=f"watch-{build.id[:8]}", daemon=True)
        self.ctx = ctx
        self.build = build
        self.abort = abort
        # The operator's timeout is also the cap: a build queued from a deployment stored before the
        # API enforced it (or by an API with a higher one) does not run longer.
        self.timeout_s = min(build.timeout_s or ctx.config.build_timeout_s, ctx.config.build_timeout_s)
        self.deadline = time.monotonic() + self.timeout_s
        self.stop: Stop | None = None
        # The build's scratch folder, once it has one.
        self.scratch: Path | None = None
        self._done = threading.Event()

    def run(self) -> None:
        ttl = self.ctx.config.lease_ttl_s
        renewed = next_renewal = next_heartbeat = next_scratch_check = time.monotonic()
        while not self._done.wait(WATCH_INTERVAL_S):
            now = time.monotonic()
            try:
                if now >= next_renewal:
                    if not self.ctx.records.renew(self.build, ttl):
                        self._halt(Stop("another attempt owns the build now"))
                        return
                    renewed, next_renewal = now, now + ttl / 3
                if now >= next_heartbeat:
                    self.ctx.heartbeat()
                    next_heartbeat = now + HEARTBEAT_INTERVAL_S
                if who := self.ctx.records.cancel_requested_by(self.build):
                    self._halt(Stop(f"Build cancelled by {who}", BuildStatus.CANCELLED, ErrorKind.CANCELLED))
                elif now > self.deadline:
                    self._halt(
                        Stop(
                            f"Build timed out after {self.timeout_s} s", BuildStatus.FAILED, ErrorKind.TIMEOUT
                        )
                    )
                elif self.ctx.shutting_down():
                    self._halt(Stop("Worker shutting down: the build is handed back", hand_back=True))
                elif now >= next_scratch_check and self.scratch and (reason := self._scratch_over_budget()):
                    self._halt(Stop(reason, BuildStatus.FAILED, ErrorKind.USER))
                if now >= next_scratch_check:
                    next_scratch_check = now + SCRATCH_CHECK_INTERVAL_S
            except redis.RedisError as e:
                # Without Redis the lease cannot be renewed: past its term another worker may
                # own the build, so this one must stop touching it.
                if now - renewed > ttl:
                    self._halt(Stop(f"lease not renewed for {ttl} s ({e})"))

    def _scratch_over_budget(self) -> str | None:
        return scratch_over_budget(self.scratch, self.ctx.config.build_disk_bytes)

    # Not `_stop`: threading.Thread has a method of that name, which it calls after a fork.
    def _halt(self, stop: Stop) -> None:
        self.stop = stop
        self._done.set()
        self.abort()

    def finish(self) -> None:
        self._done.set()

    def check(self) -> None:
        if self.stop:
            raise _Stopped()

    def pause(self, seconds: float) -> None:
        """Waits between two tries of a step, ended early by a stop."""
        self._done.wait(seconds)
        self.check()


@build_scope
def run_build(ctx: WorkerContext, build_id: str) -> None:
    config = ctx.config
    build = ctx.records.load(build_id)
    if not config.fair_scheduling and (build is None or BuildStatus(build.status).is_terminal):
        return  # deleted, or over: a redelivered message
    if low := low_free_disk(config):
        # Not claimed: no attempt is spent, and a worker with room takes the build.
        logger.warning("build %s left in the queue: %s", build_id, low)
        ctx.requeue(build_id, delay_ms=LOW_DISK_RETRY_MS)
        return
    if ctx.parts_down.idle_reason():
        # Not claimed: this worker did not reach a part of the farm (worker/parts_down.py); the
        # ticket goes back to the queue for the workers that may.
        ctx.requeue(build_id, delay_ms=BUSY_RETRY_MS)
        return
    build, claim = _claim(ctx, build_id, build)
    if build is None or claim.outcome != "claimed":
        return  # also: held under a live lease elsewhere, or out of attempts (the reaper ends it)
    bind_build(build.id, build.deployment_id)
    logger.info("build %s claimed (attempt %s)", build.id, build.attempt)
    if build.attempt == 1:
        announce(ctx, build, STARTED)
    claimed_at = time.monotonic()
    timings = _Timings(ctx, build)
    metrics.build_claimed(build, timings.values.queued_s)
    log = ctx.log_writer(build)
    if previous := claim.took_over_from:
        log.line(f"--- attempt {build.attempt}: taking over from worker {previous}, whose lease expired ---")
    # A builder's failure is the engine's if the engine went away since now (worker/engine_watch.py).
    engine_gone = EngineMark(ctx.engine_watch, config.docker_host).gone
    docker, buildkit = create_docker(config, engine_gone), BuildKitRun(config, engine_gone)

    def abort() -> None:
        buildkit.abort()
        docker.abort_stream()

    watcher = _Watcher(ctx, build, abort)
    watcher.start()
    status, kind, error, result, stop = BuildStatus.FAILED, None, None, {}, None
    metrics.running_builds(1)
    ctx.running.add(build.id)
    try:
        result = _build_and_push(ctx, build, (buildkit, docker), log, watcher, timings)
        status = BuildStatus.SUCCESS
    except Unreachable as e:
        if watcher.stop is None:
            stop = _unreachable(ctx, build, log, watcher, e)
    except (_Stopped, LostClaim):
        pass
    except Exception as e:  # the build must end as failed whatever broke; the farm's faults go to our log
        if watcher.stop is None:
            kind, error = failures.classify(e)
            if kind == ErrorKind.INFRASTRUCTURE:
                logger.exception("build %s: %s", build.id, error)
    finally:
        metrics.running_builds(-1)
        ctx.running.remove(build.id)
        watcher.finish()
        docker.close()
    stop = watcher.stop or stop
    if stop and stop.hand_back:
        _hand_back(ctx, build, log, stop.reason)
    elif log.lost_claim or (stop and stop.status is None):
        _abandon(build, log, stop)
    else:
        if stop:
            status, kind, error = stop.status, stop.kind, stop.reason
        result = {**result, **timings.fields()}
        conclude(ctx, build, log, status, (kind, error), result, run_started=claimed_at)


def _claim(ctx: WorkerContext, message_id: str, build: Build | None) -> tuple[Build | None, Claim]:
    """The build a queue message runs, claimed. Its own build when that one is building (a
    takeover of an expired lease) or without fair scheduling; otherwise the message is a slot
    ticket: it claims the next build in fair order (records.claim_next). A message that ran
    another build while its own still waits is sent again, so that no pending build is left
    without one, even when a build without a message of its own (its enqueue lost) was chosen.
    A ticket finding only builds that may not start yet comes back after a delay; one finding
    nothing pending is done."""
    config = ctx.config
    if build is not None and (build.status == BuildStatus.BUILDING or not config.fair_scheduling):
        claim = ctx.records.claim(build, ctx.worker_id, config)
        if claim.outcome == "busy":
            ctx.requeue(build.id, delay_ms=BUSY_RETRY_MS)
        elif claim.outcome == "expired":
            expire(ctx, build)
        if claim.outcome == "claimed" or not config.fair_scheduling:
            return build, claim
    claim = ctx.records.claim_next(ctx.worker_id, config, farm_defaults(config).max_running)
    # Nothing pending in the tenants' queues, yet the message's own build waits: it is in no
    # tenant's queue (queued by a farm before the fair queue), so it joins one, and the choice
    # is made again.
    own_waits = claim.outcome == "none" and build is not None and build.status == BuildStatus.PENDING
    if own_waits and ctx.records.join_queue(build):
        claim = ctx.records.claim_next(ctx.worker_id, config, farm_defaults(config).max_running)
    for expired_id in claim.expired:
        if (expired := ctx.records.load(expired_id)) is not None:
            expire(ctx, expired)
    if claim.outcome == "waiting":
        ctx.requeue(message_id, delay_ms=BUSY_RETRY_MS)
    if claim.outcome != "claimed":
        return None, claim
    if build is not None and build.status == BuildStatus.PENDING and claim.build_id != build.id:
        ctx.requeue(build.id)
    return ctx.records.load(claim.build_id), claim


class _Timings:
    """Where the build's time goes (contract.BuildTimings), kept on its record as it goes."""

    def __init__(self, ctx: WorkerContext, build: Build) -> None:
        self.ctx = ctx
        self.build = build
        self.values = contract.BuildTimings(queued_s=_seconds_between(build.created_at, build.started_at))

    def record(self, **values: float | int) -> None:
        for name, value in values.items():
            setattr(self.values, name, round(value, 3) if isinstance(value, float) else value)
        metrics.build_phases(values)
        self.ctx.records.update(self.build, **self.fields())

    def fields(self) -> dict[str, str]:
        return {"timings": json_text(msgspec.to_builtins(self.values))}


def _seconds_between(start: str | None, end: str | None) -> float | None:
    if not (start and end):
        return None
    moments = [datetime.fromisoformat(value.replace("Z", "+00:00")) for value in (start, end)]
    return round((moments[1] - moments[0]).total_seconds(), 3)


def _secrets(ctx: WorkerContext, build: Build) -> dict[str, str]:
    """The deployment's build secrets, decrypted for this build only."""
    tokens = ctx.records.secret_tokens(build.deployment_id)
    if not tokens:
        return {}
    cipher = SecretCipher.from_config(ctx.config)
    if cipher is None:
        raise ConfigError(
            "This deployment has build secrets, but BUILDFARM_SECRETS_KEY is not set on the worker"
        )
    return {name: cipher.decrypt(token) for name, token in tokens.items()}


def _build_and_push(
    ctx: WorkerContext, build: Build, engines, log: LogWriter, watcher: _Watcher, timings: _Timings
) -> dict[str, str]:
    secrets = _secrets(ctx, build)
    log.mask(list(secrets.values()))
    with scratch_folder(build) as scratch, steps_stopped_explained():
        watcher.scratch = scratch
        built = build_step(ctx, build, engines, scratch, secrets, log.line, _s3_retry(ctx, log, watcher))
    watcher.check()
    outcome = built.outcome
    timings.record(
        source_s=built.source_s, build_s=built.build_s, steps=outcome.steps, cached_steps=outcome.cached_steps
    )
    pushing = time.monotonic()
    login = registry_login(ctx.config)
    # The image is built: a registry that does not answer gets it again, not a rebuild; one that
    # refuses it fails the build as the farm's (failures.pushing).
    push_retry = _retry(log, watcher, registry_down, ctx.config.push_retry_s)
    with failures.pushing():
        digest = push_retry(
            lambda: push_image(engines[1], built.tag, login, log.line),
            part=REGISTRY,
            again="pushing again",
            lost="the image was built but not pushed",
        )
    watcher.check()
    timings.record(push_s=time.monotonic() - pushing)
    return {"image_tag": built.tag, "image_digest": digest}


def _retry(
    log: LogWriter, watcher: _Watcher, fault: Callable[[Exception], str | None], bound_s: float
) -> functools.partial:
    """retry_within (worker/infra_retry.py) for this build: its retries in its log, its waits cut
    short when the build is stopped."""
    return functools.partial(retry_within, fault=fault, bound_s=bound_s, log=log.line, pause=watcher.pause)


def _s3_retry(ctx: WorkerContext, log: LogWriter, watcher: _Watcher) -> Retry:
    """Tries a step that reads the build's source from S3 again while S3 does not answer."""
    return functools.partial(
        _retry(log, watcher, unanswered, ctx.config.source_retry_s),
        part=S3,
        again="fetching the source again",
        lost="the build's source could not be fetched",
    )


def _unreachable(
    ctx: WorkerContext, build: Build, log: LogWriter, watcher: _Watcher, fault: Unreachable
) -> Stop | None:
    """What becomes of a build a part of the farm did not answer within its bound: handed back
    while it has attempts left (an engine gone is first waited for, within
    BUILDFARM_ENGINE_RETRY_S), else failed as the farm's fault. None: stopped meanwhile."""
    config, attempt = ctx.config, build.attempt
    if attempt >= config.max_attempts:
        reason = f"{fault}; no attempt is left ({attempt} of {config.max_attempts} used)"
        logger.warning("build %s: %s", build.id, reason)
        return Stop(reason, BuildStatus.FAILED, ErrorKind.INFRASTRUCTURE)
    bound, back, outcome = fault.bound_s, False, ""
    if isinstance(fault, EngineGone):
        bound = config.engine_retry_s
        log.line(f"{fault}: waiting up to {duration(bound)} for it to answer again")
        try:
            back, outcome = _engine_back(config.docker_host, bound, watcher)
        except _Stopped:
            return None
    if not back:
        # This worker leaves the builds to others for a while: they may reach the part.
        ctx.parts_down.mark(fault.part, bound)
    logger.warning("build %s: %s%s; handed back", build.id, fault, outcome)
    again = f"attempt {attempt + 1} of {config.max_attempts}"
    return Stop(f"{fault}{outcome}: the build is handed back, to run again ({again})", hand_back=True)


def _engine_back(docker_host: str, bound_s: float, watcher: _Watcher) -> tuple[bool, str]:
    """Waits for the engine to answer again within the bound: whether it did, in words too."""
    gone = time.monotonic()
    while (waited := time.monotonic() - gone) < bound_s:
        if engine_answers(docker_host):
            return True, f" (it answered again {waited:.0f} s later)"
        watcher.pause(ENGINE_CHECK_INTERVAL_S)
    return False, f" (it did not answer for {duration(bound_s)})"


def _abandon(build: Build, log: LogWriter, stop: Stop | None) -> None:
    """Leaves a build whose claim was lost to its new owner: the lines still buffered are
    offered once more, and Redis refuses them (fencing) if another attempt owns the build."""
    try:
        log.drain()
    except redis.RedisError as e:
        logger.warning("build %s: lines of a lost attempt not written (%s)", build.id, e)
    logger.warning(
        "build %s: claim lost (%s); writes refused: %s", build.id, stop.reason if stop else "", log.lost_claim
    )


def _hand_back(ctx: WorkerContext, build: Build, log: LogWriter, reason: str) -> None:
    """Gives a stopped build back to the queue: the next worker takes it over (attempt + 1)."""
    log.line(f"--- {reason} ---", footer=True)
    log.drain()
    if ctx.records.release(build):
        ctx.requeue(build.id)
        logger.info("build %s handed back", build.id)


def conclude(
    ctx: WorkerContext,
    build: Build,
    log: LogWriter,
    status: BuildStatus,
    failure: tuple[ErrorKind | None, str | None],
    result: dict[str, str],
    run_started: float | None = None,
) -> None:
    """Ends a build: its last lines, then its final status, then the end marker, then the archive
    (handed to the process's archiver, worker/log_archiver.py: the caller's slot is free meanwhile).
    A reader that sees the end of the log always finds the build finished, with its whole log.
    `failure` is whose fault it is and why, for a build that did not succeed."""
    kind, error = failure
    if error:
        error = log.masked(error)
        log.line(f"ERROR: {error}", footer=True)
    log.line(f"Build {status.value}", footer=True)
    fields = dict(result) if status == BuildStatus.SUCCESS else {}
    if error:
        fields["error"] = error
    if kind and status != BuildStatus.SUCCESS:
        fields["error_kind"] = kind.value
    log.drain()
    if not ctx.records.finish(build, status, **fields):
        logger.warning("build %s: could not record %s (claim lost or already over)", build.id, status)
        return
    log.end(status.value)
    logger.info("build %s %s", build.id, status.value)
    metrics.build_ended(status, kind, None if run_started is None else time.monotonic() - run_started)
    _accrue_build_time(ctx, build)
    announce(ctx, build, ENDED[status])
    if ctx.archiver:
        ctx.archiver.submit(build)  # the slot is free for the next build meanwhile
    else:
        archive_log(ctx, build)


def _accrue_build_time(ctx: WorkerContext, build: Build) -> None:
    """Adds the ended build's time to its tenant's month (common/records/usage.py); the build
    ended once (its finish is fenced), so its time is added once."""
    seconds = _seconds_between(build.started_at, build.finished_at)
    if seconds is None:
        return
    try:
        ctx.records.accrue_build_time(build.tenant, build.finished_at, seconds)
    except redis.RedisError as e:
        logger.warning(
            "build %s: its %s s of build time not added to its tenant's usage (%s)", build.id, seconds, e
        )


def expire(ctx: WorkerContext, build: Build) -> None:
    """Fails a build that waited in the queue past the deadline, without running it."""
    deadline = ctx.config.queue_deadline_s
    fields = {
        "finished_at": utc_now(),
        "error": f"Expired: waited in the queue for more than {deadline} s",
        "error_kind": ErrorKind.TIMEOUT.value,
    }
    pending = frozenset({BuildStatus.PENDING})
    if ctx.records.transition(build.id, build.deployment_id, BuildStatus.FAILED, fields, expected=pending).ok:
        logger.info("build %s expired in the queue", build.id)
        metrics.build_ended(BuildStatus.FAILED, ErrorKind.TIMEOUT)
        announce(ctx, build, FAILED)
