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


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=2.0, base=0.1)


def sync_redis(url: str, socket_timeout: float = 30) -> redis.Redis:
    return redis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        retry=Retry(_backoff(), RETRIES),
        retry_on_error=RETRY_ON,
    )


def async_redis(url: str, socket_timeout: float = 10) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        health_check_interval=30,
        retry=AsyncRetry(_backoff(), RETRIES),
        retry_on_error=RETRY_ON,
        max_connections=ASYNC_MAX_CONNECTIONS,
    )
