"""The Dramatiq actor that runs builds, and the middleware that runs each worker process's
maintenance (reaper, archive retries) and gives running builds a grace period at shutdown.

Run with: dramatiq worker.actors --queues builds --processes P --threads T
"""

from __future__ import annotations

import time

import dramatiq

from common.broker import RUN_BUILD_ACTOR, create_broker
from common.config import Config
from worker.context import worker_context
from worker.logcontext import BuildLogging
from worker.maintenance import MaintenanceThread
from worker.metrics import WorkerMetrics
from worker.pipeline import run_build as run_pipeline


class WorkerLifecycle(dramatiq.Middleware):
    def after_worker_boot(self, broker, worker) -> None:
        self.maintenance = MaintenanceThread(worker_context())
        self.maintenance.start()

    def before_worker_shutdown(self, broker, worker) -> None:
        # Running builds may finish within the grace period; past it they are handed back.
        ctx = worker_context()
        ctx.shutdown_deadline = time.time() + ctx.config.worker_grace_s
        self.maintenance.stopping.set()


config = Config.from_env()
broker = create_broker(config)
broker.add_middleware(BuildLogging())
broker.add_middleware(WorkerMetrics())
broker.add_middleware(WorkerLifecycle())
dramatiq.set_broker(broker)


# Retries are ours (the lease and the reaper), not Dramatiq's backoff of up to days.
@dramatiq.actor(actor_name=RUN_BUILD_ACTOR, queue_name=config.queue_name, max_retries=0)
def run_build(build_id: str) -> None:
    run_pipeline(worker_context(), build_id)
