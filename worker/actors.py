"""The Dramatiq actor that runs builds, and the middleware that starts the archive retrier.

Run with: dramatiq worker.actors --queues builds --processes P --threads T
"""

from __future__ import annotations

import dramatiq

from common.broker import RUN_BUILD_ACTOR, create_broker
from common.config import Config
from worker.archiver import ArchiveRetrier
from worker.context import worker_context
from worker.pipeline import run_build as run_pipeline


class ArchiveRetryMiddleware(dramatiq.Middleware):
    """One archive retrier per worker process, started after the process boots."""

    def after_worker_boot(self, broker, worker) -> None:
        self.retrier = ArchiveRetrier(worker_context())
        self.retrier.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        self.retrier.stopping.set()


config = Config.from_env()
broker = create_broker(config)
broker.add_middleware(ArchiveRetryMiddleware())
dramatiq.set_broker(broker)


# Retries are ours (the lease and the reaper), not Dramatiq's backoff of up to days.
@dramatiq.actor(actor_name=RUN_BUILD_ACTOR, queue_name=config.queue_name, max_retries=0)
def run_build(build_id: str) -> None:
    run_pipeline(worker_context(), build_id)
