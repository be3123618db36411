"""Log retention: archived logs older than BUILDFARM_LOG_RETENTION_DAYS are deleted from the
logs bucket; their builds keep their records, and the API answers 404 "Build logs not
available" for them."""

from __future__ import annotations

import logging
import time

from minio.error import S3Error

from common.models import LogState
from common.records import fields, keys
from common.s3 import log_key
from worker.context import WorkerContext

logger = logging.getLogger("buildfarm.retention")

BATCH = 500


def expire_logs(ctx: WorkerContext, older_than_s: float | None = None) -> int:
    """Deletes the archived logs older than the retention (or `older_than_s`); returns how many."""
    age = ctx.config.log_retention_days * 86400 if older_than_s is None else older_than_s
    if age <= 0 and older_than_s is None:
        return 0  # 0 days: keep logs forever
    cutoff = time.time() - age
    expired = 0
    while ids := ctx.redis.zrangebyscore(keys.log_archive_done(), "-inf", cutoff, start=0, num=BATCH):
        for raw in ids:
            build_id = raw.decode()
            deployment_id = ctx.redis.hget(keys.build(build_id), fields.DEPLOYMENT_ID)
            if deployment_id is not None:
                try:
                    ctx.s3.remove_object(ctx.config.logs_bucket, log_key(deployment_id.decode(), build_id))
                except S3Error as e:
                    if e.code != "NoSuchKey":
                        raise
                ctx.redis.hset(keys.build(build_id), fields.LOG_STATE, LogState.EXPIRED.value)
            ctx.redis.zrem(keys.log_archive_done(), raw)
            expired += 1
    if expired:
        logger.info("deleted %s archived log(s) older than %s days", expired, ctx.config.log_retention_days)
    return expired
