"""Liveness (/healthz: the process answers) and readiness (/readyz: Redis and S3 answer)."""

from __future__ import annotations

import asyncio

import falcon
import redis.asyncio as aioredis
from minio import Minio

from common.config import Config

CHECK_TIMEOUT_S = 2.0


class HealthResource:
    public = True  # probes of the orchestrator carry no token

    def __init__(self, config: Config, redis: aioredis.Redis, s3: Minio) -> None:
        self.config = config
        self.redis = redis
        self.s3 = s3

    async def on_get_live(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"status": "ok"}

    async def on_get_ready(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = {
            "redis": await self._check(self.redis.ping()),
            "s3": await self._check(asyncio.to_thread(self.s3.bucket_exists, self.config.logs_bucket)),
        }
        ready = all(v == "ok" for v in checks.values())
        resp.status = falcon.HTTP_200 if ready else falcon.HTTP_503
        resp.media = {"status": "ready" if ready else "not_ready", "checks": checks}

    async def _check(self, probe) -> str:
        try:
            await asyncio.wait_for(probe, CHECK_TIMEOUT_S)
        except Exception as e:  # any failure means "not ready"; report its kind
            return f"error: {type(e).__name__}"
        return "ok"
