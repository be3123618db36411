"""Moves a finished build's log from its Redis stream to the logs bucket; the stream is
dropped only after a confirmed upload, and failed uploads are retried until they succeed."""

from __future__ import annotations

import logging
import tempfile
import time

import msgspec
from minio.error import MinioException
from urllib3.exceptions import HTTPError

from common.contract import public_build
from common.logformat import LINE_FIELD
from common.logging_json import bind_build, build_scope
from common.models import Build, LogState
from common.records import fields, keys
from common.s3 import log_key
from worker import metrics
from worker.context import WorkerContext

logger = logging.getLogger("buildfarm.log_archive")

PAGE = 5000
RETRY_BATCH = 20
LOCK_TTL_S = 300


@build_scope
def archive_log(ctx: WorkerContext, build: Build) -> bool:
    """Uploads the log; on failure it stays in Redis and on the retry list. True if archived.

    One uploader at a time per build (a lock): two concurrent uploads of one object, one of
    them reading a stream the other has just dropped, would store a truncated log."""
    bind_build(build.id, build.deployment_id)
    pending = keys.log_archive_pending()
    ctx.redis.zadd(pending, {build.id: time.time()}, nx=True)
    lock = keys.log_archive_lock(build.id)
    if not ctx.redis.set(lock, ctx.worker_id, nx=True, ex=LOCK_TTL_S):
        return False
    try:
        if ctx.redis.hget(keys.build(build.id), fields.LOG_STATE) == LogState.ARCHIVED.value.encode():
            ctx.redis.zrem(pending, build.id)
            return True
        size = _upload(ctx, build)
    except (MinioException, HTTPError, OSError) as e:
        logger.warning("log of build %s not archived yet (%s); it stays in Redis", build.id, e)
        metrics.log_archive_failed()
        return False
    else:
        with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.build(build.id), fields.LOG_STATE, LogState.ARCHIVED.value)
            pipe.delete(keys.build_log(build.id))
            pipe.zrem(pending, build.id)
            pipe.zadd(keys.log_archive_done(), {build.id: time.time()})
            pipe.execute()
        metrics.log_archived(size)
        return True
    finally:
        ctx.redis.delete(lock)


def _upload(ctx: WorkerContext, build: Build) -> int:
    with tempfile.TemporaryFile() as spool:
        _spool_stream(ctx, build.id, spool)
        size = spool.tell()
        spool.seek(0)
        ctx.s3.put_object(
            ctx.config.logs_bucket,
            log_key(build.deployment_id, build.id),
            spool,
            size,
            content_type="text/plain; charset=utf-8",
            metadata=_metadata(build),
        )
    return size


def _spool_stream(ctx: WorkerContext, build_id: str, spool) -> None:
    stream, start = keys.build_log(build_id), "-"
    while entries := ctx.redis.xrange(stream, min=start, count=PAGE):
        for _, entry in entries:
            if LINE_FIELD in entry:
                spool.write(entry[LINE_FIELD] + b"\n")
        start = "(" + entries[-1][0].decode()


def _metadata(build: Build) -> dict[str, str]:
    """The public build record as object metadata (S3 metadata must be ASCII)."""
    record = msgspec.structs.asdict(public_build(build))
    return {
        key: str(value).encode("ascii", "replace").decode()
        for key, value in record.items()
        if value is not None
    }


def retry_log_archives(ctx: WorkerContext) -> None:
    """Retries the uploads that failed (storage down), oldest first."""
    for raw in ctx.redis.zrange(keys.log_archive_pending(), 0, RETRY_BATCH - 1):
        build = ctx.records.load(raw.decode())
        if build is None:
            ctx.redis.zrem(keys.log_archive_pending(), raw)
        elif not archive_log(ctx, build) and not ctx.redis.exists(keys.log_archive_lock(build.id)):
            return  # storage still down: wait for the next round
