"""The Dramatiq actor that runs builds, on a broker with the worker's middleware
(worker/middleware/).

Run with: dramatiq worker.actors --queues builds --processes P --threads T
"""

from __future__ import annotations

import dramatiq

from common.broker import RUN_BUILD_ACTOR, create_broker
from common.config import Config
from common.credentials import require_strong_credentials
from worker.context import worker_context
from worker.middleware.build_logging import BuildLogging
from worker.middleware.lifecycle import WorkerLifecycle
from worker.middleware.metrics import WorkerMetrics
from worker.middleware.registry_login import RegistryLogin
from worker.pipeline import run_build as run_pipeline

config = Config.from_env()
require_strong_credentials(config, registry=True)
broker = create_broker(config)
broker.add_middleware(BuildLogging())
broker.add_middleware(WorkerMetrics())
broker.add_middleware(WorkerLifecycle())
broker.add_middleware(RegistryLogin())
dramatiq.set_broker(broker)


# Retries are ours (the lease and the reaper), not Dramatiq's backoff of up to days.
@dramatiq.actor(actor_name=RUN_BUILD_ACTOR, queue_name=config.queue_name, max_retries=0)
def run_build(build_id: str) -> None:
    run_pipeline(worker_context(), build_id)
