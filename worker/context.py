"""What a worker process needs to run builds: config and its connections, made once."""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass, field

import redis
from minio import Minio

from common.config import Config
from common.objects import create_s3, ensure_buckets
from worker.docker_build import AbortableAPIClient, create_docker
from worker.records import BuildRecords


@dataclass
class WorkerContext:
    config: Config
    redis: redis.Redis
    s3: Minio
    records: BuildRecords = field(init=False)
    worker_id: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def __post_init__(self) -> None:
        self.records = BuildRecords(self.redis)

    def docker(self) -> AbortableAPIClient:
        """A client per build: aborting one build's stream must not touch another's."""
        return create_docker(self.config)


@functools.cache
def worker_context() -> WorkerContext:
    config = Config.from_env()
    client = redis.Redis.from_url(config.redis_url, socket_timeout=30, health_check_interval=30)
    s3 = create_s3(config)
    ensure_buckets(s3, config)
    return WorkerContext(config, client, s3)
