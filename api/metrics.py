"""Prometheus metrics of the API, served at GET /metrics (no tenant token, like /healthz; the
operator's BUILDFARM_METRICS_TOKEN when set: common/metrics_access.py).

HTTP requests are counted and timed by route template (the matched route, never the raw path:
ids would make a series per build), method and status code. Under gunicorn each worker process
counts the requests it served into the server run's multiprocess directory (api/server.py,
common/metrics_dir.py), and every scrape, whichever process answers it, sums them all; without
that directory (a single uvicorn process, tests) the counts stay in this process's memory.

The queue gauges (and the active builds, farm-wide and by tenant) are read from Redis at each
scrape: they are the farm's state, not a count of this process.
"""

from __future__ import annotations

import asyncio
import logging
import time

import falcon
import redis.asyncio as aioredis
from dramatiq.common import dq_name
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest, multiprocess, values
from prometheus_client.core import GaugeMetricFamily
from redis.exceptions import RedisError

from api.store import RecordStore
from common.config import Config
from common.metrics_access import CHALLENGE, REFUSAL, may_read_metrics
from common.models import BuildStatus
from common.records import keys

logger = logging.getLogger("buildfarm.api.metrics")

# Decided by how prometheus_client stores values in this process (it chose at its import).
MULTIPROCESS = values.ValueClass is not values.MutexValue
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
QUEUE_READ_TIMEOUT_S = 2.0
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120, float("inf"))

REQUESTS = Counter(
    "buildfarm_http_requests",
    "HTTP requests answered, by method, route template and status code",
    ["method", "route", "status"],
    registry=None,
)
LATENCY = Histogram(
    "buildfarm_http_request_duration_seconds",
    "Time from the request to its response head, by method, route template and status code",
    ["method", "route", "status"],
    buckets=LATENCY_BUCKETS,
    registry=None,
)


class MetricsMiddleware:
    """Counts and times every HTTP request (WebSocket connections are not requests here), by the
    route it reached (a 401 too: api/auth.py decides after routing); UNMATCHED when none."""

    async def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.metrics_started = time.perf_counter()

    async def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded):
        started = req.context.get("metrics_started")
        if started is None:
            return
        route = req.uri_template or UNMATCHED
        labels = (req.method if req.method in METHODS else "other", route, str(resp.status_code))
        REQUESTS.labels(*labels).inc()
        LATENCY.labels(*labels).observe(time.perf_counter() - started)


class _Families:
    def __init__(self, families: list) -> None:
        self.families = families

    def collect(self):
        return self.families


class MetricsResource:
    public = True  # for tenants' tokens: BUILDFARM_METRICS_TOKEN guards it (common/metrics_access.py)

    def __init__(self, config: Config, redis: aioredis.Redis, broker, store: RecordStore) -> None:
        self.config = config
        self.redis = redis
        self.broker = broker
        self.store = store

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if not may_read_metrics(self.config.metrics_token, req.get_header("Authorization")):
            raise falcon.HTTPUnauthorized(description=REFUSAL, challenges=[CHALLENGE])
        registry = CollectorRegistry(auto_describe=False)
        if MULTIPROCESS:
            multiprocess.MultiProcessCollector(registry)
        else:
            registry.register(REQUESTS)
            registry.register(LATENCY)
        registry.register(_Families(await self._queue_families()))
        resp.content_type = CONTENT_TYPE
        resp.data = await asyncio.to_thread(generate_latest, registry)

    def _queue_lengths(self) -> list[int]:
        """Read with the broker's own client: the queue has a Redis database of its own."""
        queue, ns = self.config.queue_name, self.broker.namespace
        with self.broker.client.pipeline(transaction=False) as pipe:
            pipe.llen(f"{ns}:{queue}")
            pipe.hlen(f"{ns}:{queue}.msgs")
            pipe.hlen(f"{ns}:{dq_name(queue)}.msgs")
            return pipe.execute()

    async def _queue_families(self) -> list:
        """The Dramatiq queue (dramatiq/brokers/redis/dispatch.lua: the list `ns:queue` holds
        the ids of messages waiting for a worker, the hash `ns:queue.msgs` every message not
        yet acknowledged, `ns:queue.DQ.msgs` the delayed ones) and the farm's active builds,
        also by tenant."""
        queue = self.config.queue_name
        try:
            waiting, unacked, delayed = await asyncio.wait_for(
                asyncio.to_thread(self._queue_lengths), QUEUE_READ_TIMEOUT_S
            )
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.zcard(keys.active_builds(BuildStatus.PENDING))
                pipe.zcard(keys.active_builds(BuildStatus.BUILDING))
                pending, building = await asyncio.wait_for(pipe.execute(), QUEUE_READ_TIMEOUT_S)
            by_tenant = await asyncio.wait_for(self.store.active_by_tenant(), QUEUE_READ_TIMEOUT_S)
        except (RedisError, TimeoutError) as e:
            logger.warning("queue gauges left out of /metrics: Redis: %s", e)
            return []
        gauges = [
            ("buildfarm_queue_depth", "Messages waiting in the queue for a worker to fetch them", waiting),
            (
                "buildfarm_queue_unacked",
                "Messages not yet acknowledged: waiting, or fetched by a worker and running",
                unacked,
            ),
            ("buildfarm_queue_delayed", "Delayed messages (builds offered again later)", delayed),
        ]
        families = []
        for name, help_text, value in gauges:
            family = GaugeMetricFamily(name, help_text, labels=["queue"])
            family.add_metric([queue], value)
            families.append(family)
        active = GaugeMetricFamily(
            "buildfarm_builds_active", "Builds pending or building, farm-wide", labels=["status"]
        )
        active.add_metric([BuildStatus.PENDING.value], pending)
        active.add_metric([BuildStatus.BUILDING.value], building)
        families.append(active)
        tenants = GaugeMetricFamily(
            "buildfarm_tenant_builds",
            "Builds pending or building, by tenant (tenants with none have no series)",
            labels=["tenant", "status"],
        )
        for tenant, activity in sorted(by_tenant.items()):
            tenants.add_metric([tenant, BuildStatus.PENDING.value], activity.queued)
            tenants.add_metric([tenant, BuildStatus.BUILDING.value], activity.running)
        families.append(tenants)
        return families
