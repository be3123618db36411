"""Log retention: archived logs older than BUILDFARM_LOG_RETENTION_DAYS are deleted from the
logs bucket, each with the JSON build record beside it; the builds themselves stay, and the
API answers 404 "Build logs not available" for them."""

from __future__ import annotations

import logging
import time

from minio.error import S3Error

from common.models import LogState
from common.records import fields, keys
from common.s3 import log_key, record_key
from worker.context import WorkerContext

logger = logging.getLogger("buildfarm.retention")

BATCH = 500


def expire_logs(ctx: WorkerContext) -> int:
    """Deletes the archived logs older than the retention; returns how many."""
    if ctx.config.log_retention_days <= 0:
        return 0  # 0 days: keep logs forever
    cutoff = time.time() - ctx.config.log_retention_days * 86400
    expired = 0
    while ids := ctx.redis.zrangebyscore(keys.LOG_ARCHIVE_DONE, "-inf", cutoff, start=0, num=BATCH):
        for raw in ids:
            build_id = raw.decode()
            deployment_id = ctx.redis.hget(keys.build(build_id), fields.DEPLOYMENT_ID)
            if deployment_id is not None:
                # The record first: as while archiving, a record found means its log is whole.
                _remove(ctx, record_key(deployment_id.decode(), build_id))
                _remove(ctx, log_key(deployment_id.decode(), build_id))
                ctx.redis.hset(keys.build(build_id), fields.LOG_STATE, LogState.EXPIRED.value)
            ctx.redis.zrem(keys.LOG_ARCHIVE_DONE, raw)
            expired += 1
    if expired:
        logger.info("deleted %s archived log(s) older than %s days", expired, ctx.config.log_retention_days)
    return expired


def _remove(ctx: WorkerContext, key: str) -> None:
    """Deletes one object of the logs bucket; one already gone (a run that stopped halfway, a
    log archived before records were written beside it) is not an error."""
    try:
        ctx.s3.remove_object(ctx.config.logs_bucket, key)
    except S3Error as e:
        if e.code != "NoSuchKey":
            raise
