"""Hands a build to the workers through Dramatiq (the API never imports the worker's actors)."""

from __future__ import annotations

import logging

import falcon
from dramatiq.brokers.redis import RedisBroker

from api.errors import not_found
from api.store import RecordStore
from common.broker import build_message
from common.config import Config
from common.models import Build, BuildStatus, utc_now

logger = logging.getLogger("buildfarm.api")


class BuildQueue:
    def __init__(self, config: Config, broker: RedisBroker) -> None:
        self.config = config
        self.broker = broker

    def enqueue(self, build_id: str) -> None:
        # A sub-millisecond Redis call: cheaper inline than a hop to a thread.
        self.broker.enqueue(build_message(self.config, build_id))

    async def submit(self, store: RecordStore, build: Build) -> Build:
        """Stores a new pending build and queues it; if the queue is unreachable the build is
        marked failed (nothing waits for a message that was never sent) and the caller gets 503."""
        if await store.create_build(build) is None:
            raise not_found("Deployment not found")
        try:
            self.enqueue(build.id)
        except Exception:
            logger.exception("could not queue build %s", build.id)
            fields = {"finished_at": utc_now(), "error": "The build could not be queued: try again"}
            await store.transition(
                build, BuildStatus.FAILED, fields, expected=frozenset({BuildStatus.PENDING})
            )
            raise falcon.HTTPServiceUnavailable(
                description="The build queue is unavailable: try again"
            ) from None
        return build
