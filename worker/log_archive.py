"""Moves a finished build's log from its Redis stream to the logs bucket, with the build's
public record as a JSON object beside it; the stream is dropped only after both uploads are
confirmed, and failed uploads are retried until they succeed."""

from __future__ import annotations

import io
import logging
import tempfile
import time

from minio.error import MinioException
from urllib3.exceptions import HTTPError

from common.contract import encode, public_build
from common.logformat import LINE_FIELD
from common.logging_json import bind_build, build_scope
from common.models import Build, LogState
from common.records import fields, keys
from common.s3 import log_key, record_key
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
    pending = keys.LOG_ARCHIVE_PENDING
    await_archive(ctx, build.id)
    lock = keys.log_archive_lock(build.id)
    if not ctx.redis.set(lock, ctx.worker_id, nx=True, ex=LOCK_TTL_S):
        return False
    try:
        # The stored build, not the caller's copy, which may be older: the archived record is
        # the one the API returns.
        stored = ctx.records.load(build.id)
        if stored is None or stored.log_state == LogState.ARCHIVED.value:
            # Archived already, or deleted with its deployment (and its stream with it).
            ctx.redis.zrem(pending, build.id)
            return stored is not None
        size = _upload(ctx, stored)
    except (MinioException, HTTPError, OSError) as e:
        logger.warning("log of build %s not archived yet (%s); it stays in Redis", build.id, e)
        metrics.log_archive_failed()
        return False
    else:
        with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.build(build.id), fields.LOG_STATE, LogState.ARCHIVED.value)
            pipe.delete(keys.build_log(build.id))
            pipe.zrem(pending, build.id)
            pipe.zadd(keys.LOG_ARCHIVE_DONE, {build.id: time.time()})
            pipe.execute()
        metrics.log_archived(size)
        return True
    finally:
        ctx.redis.delete(lock)


def await_archive(ctx: WorkerContext, build_id: str) -> None:
    """Lists the build's log among those to archive (retry_log_archives), until it is."""
    ctx.redis.zadd(keys.LOG_ARCHIVE_PENDING, {build_id: time.time()}, nx=True)


def _upload(ctx: WorkerContext, build: Build) -> int:
    """The log first, then its record: S3 servers such as rclone show an object while it is
    still being written, so a reader that finds the record knows the log beside it is whole."""
    bucket = ctx.config.logs_bucket
    with tempfile.TemporaryFile() as spool:
        _spool_stream(ctx, build.id, spool)
        size = spool.tell()
        spool.seek(0)
        key = log_key(build.deployment_id, build.id)
        ctx.s3.put_object(bucket, key, spool, size, content_type="text/plain; charset=utf-8")
    # The build as the API returns it. A JSON object rather than object metadata, which rclone's
    # S3 server keeps only in memory (lost on restart) and which caps at 2 KB.
    record = encode(public_build(build))
    key = record_key(build.deployment_id, build.id)
    ctx.s3.put_object(bucket, key, io.BytesIO(record), len(record), content_type="application/json")
    return size


def _spool_stream(ctx: WorkerContext, build_id: str, spool) -> None:
    stream, start = keys.build_log(build_id), "-"
    while entries := ctx.redis.xrange(stream, min=start, count=PAGE):
        for _, entry in entries:
            if LINE_FIELD in entry:
                spool.write(entry[LINE_FIELD] + b"\n")
        start = "(" + entries[-1][0].decode()


def retry_log_archives(ctx: WorkerContext) -> None:
    """Retries the uploads that failed (storage down), oldest first."""
    for raw in ctx.redis.zrange(keys.LOG_ARCHIVE_PENDING, 0, RETRY_BATCH - 1):
        build = ctx.records.load(raw.decode())
        if build is None:
            ctx.redis.zrem(keys.LOG_ARCHIVE_PENDING, raw)
        elif not archive_log(ctx, build) and not ctx.redis.exists(keys.log_archive_lock(build.id)):
            return  # storage still down: wait for the next round
