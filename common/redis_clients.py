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
# The connections an API process's requests share: a request waits for a free one rather than
# open more, so a burst of requests (hundreds of log WebSockets connecting at once) does not grow
# Redis's clients with it. Redis serves one command at a time: more would not be faster.
API_CONNECTIONS = 16
# Each build followed live holds a connection of its own while it waits for new lines (XREAD
# BLOCK, api/logfanout.py): one per build followed in an API process, whatever its followers.
ASYNC_MAX_CONNECTIONS = 2048
# The connections that log followers share to replay what a log holds before they join its
# live reader: however many followers join at once, they wait for one of these.
LOG_REPLAY_CONNECTIONS = 8


def _retrying(retry: type[Retry] | type[AsyncRetry]) -> dict:
    backoff = ExponentialBackoff(cap=2.0, base=0.1)
    return {"health_check_interval": 30, "retry": retry(backoff, RETRIES), "retry_on_error": RETRY_ON}


def sync_redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=30, **_retrying(Retry))


def async_redis(url: str) -> aioredis.Redis:
    return aioredis.Redis.from_url(
        url, socket_timeout=10, max_connections=ASYNC_MAX_CONNECTIONS, **_retrying(AsyncRetry)
    )


def bounded_async_redis(url: str, connections: int) -> aioredis.Redis:
    """A client whose callers wait for one of its `connections` rather than open more."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=connections, socket_timeout=10, **_retrying(AsyncRetry)
    )
    return aioredis.Redis.from_pool(pool)
