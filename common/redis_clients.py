"""Redis clients that ride out a Redis restart: a command that meets a closed connection is
retried on a fresh one, with a short backoff, instead of failing at once."""

from __future__ import annotations

import redis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError, TimeoutError
from redis.retry import Retry

RETRIES = 6  # about 6 s of backoff in all
RETRY_ON = [ConnectionError, TimeoutError]
# Every log WebSocket holds a connection while it waits for new lines (XREAD BLOCK): the
# API's pool must outgrow redis-py's default of 100.
ASYNC_MAX_CONNECTIONS = 2048


def _retrying(retry: type[Retry] | type[AsyncRetry]) -> dict:
    backoff = ExponentialBackoff(cap=2.0, base=0.1)
    return {"health_check_interval": 30, "retry": retry(backoff, RETRIES), "retry_on_error": RETRY_ON}


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30, **_retrying(Retry))


def async_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=10, max_connections=ASYNC_MAX_CONNECTIONS, **_retrying(AsyncRetry)
    )
