"""Ends or re-queues builds nobody runs any more, whatever Dramatiq does with their messages:
a building build whose lease expired is offered again (another worker takes it over, attempt
+ 1) or, out of attempts, failed as "worker lost"; a build pending past the queue deadline
fails as expired. Every worker process runs it; Redis keeps them from doing a build twice."""

from __future__ import annotations

import logging

from common.logging_json import bind_build, build_scope
from common.models import Build, BuildStatus, ErrorKind
from common.records import keys
from worker.context import WorkerContext
from worker.pipeline import conclude, expire

logger = logging.getLogger("buildfarm.reaper")


@build_scope
def reap_once(ctx: WorkerContext) -> None:
    config = ctx.config
    now = ctx.records.now_ms()
    for raw in ctx.redis.zrange(keys.active_builds(BuildStatus.BUILDING), 0, -1):
        build = ctx.records.load(raw.decode())
        if build is None or build.status != BuildStatus.BUILDING:
            ctx.redis.zrem(keys.active_builds(BuildStatus.BUILDING), raw)
            continue
        if build.lease_expires_ms > now:
            continue
        bind_build(build.id, build.deployment_id)
        marker = keys.reap_marker(build.id, build.attempt)
        if build.cancel_requested_by or build.attempt >= config.max_attempts:
            _end_abandoned(ctx, build)
        elif ctx.redis.set(marker, ctx.worker_id, nx=True, px=int(config.lease_ttl_s * 2000)):
            logger.info("build %s: lease of attempt %s expired; offering it again", build.id, build.attempt)
            ctx.requeue(build.id)
    oldest = now - config.queue_deadline_s * 1000
    for raw in ctx.redis.zrangebyscore(keys.active_builds(BuildStatus.PENDING), "-inf", oldest):
        build = ctx.records.load(raw.decode())
        if build is None:
            ctx.redis.zrem(keys.active_builds(BuildStatus.PENDING), raw)
        else:
            bind_build(build.id, build.deployment_id)
            expire(ctx, build)


def _end_abandoned(ctx: WorkerContext, build: Build) -> None:
    """Ends a build whose worker is gone for good, under an attempt of its own: should the
    lost worker come back, its writes are refused."""
    if build.cancel_requested_by:
        status, kind = BuildStatus.CANCELLED, ErrorKind.CANCELLED
        reason = f"Build cancelled by {build.cancel_requested_by} (its worker was lost)"
    else:
        status, kind = BuildStatus.FAILED, ErrorKind.INFRASTRUCTURE
        reason = f"Worker lost: {build.attempt} attempt(s) ended without their worker (last: {build.worker})"
    if not ctx.records.seize(build, ctx.worker_id):
        return
    logger.warning("build %s: %s", build.id, reason)
    conclude(ctx, build, ctx.log_writer(build), status, (kind, reason), {})
