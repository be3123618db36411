"""The Dramatiq actors: the one that runs builds, on a broker with the worker's middleware
(worker/middleware/), and those that tell a deployment's integrations of its builds' events
(docs/INTEGRATIONS.md), on a queue of their own, retried with backoff.

Run with: dramatiq worker.actors --queues builds integrations --processes P --threads T
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from common.broker import RUN_BUILD_ACTOR, create_broker
from common.config import Config
from common.credentials import require_strong_credentials
from common.integrations import ANNOUNCE_ACTOR, DELIVER_ACTOR, REPORT_ACTOR
from worker import commit_status, integrations, notifications
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
broker.add_middleware(CurrentMessage())
broker.declare_queue(config.integrations_queue)
dramatiq.set_broker(broker)

# Dramatiq's retries (Retries middleware): up to BUILDFARM_INTEGRATION_RETRIES more attempts, the
# waits doubling from BUILDFARM_INTEGRATION_BACKOFF_MS, at most an hour.
INTEGRATION_ACTOR = {
    "queue_name": config.integrations_queue,
    "max_retries": config.integration_retries,
    "min_backoff": config.integration_backoff_ms,
    "max_backoff": 3600 * 1000,
}


# Retries are ours (the lease and the reaper), not Dramatiq's backoff of up to days.
@dramatiq.actor(actor_name=RUN_BUILD_ACTOR, queue_name=config.queue_name, max_retries=0)
def run_build(build_id: str) -> None:
    run_pipeline(worker_context(), build_id)


@dramatiq.actor(actor_name=ANNOUNCE_ACTOR, **INTEGRATION_ACTOR)
def announce_build(build_id: str, event: str) -> None:
    integrations.fan_out(worker_context(), build_id, event)


@dramatiq.actor(actor_name=DELIVER_ACTOR, **INTEGRATION_ACTOR)
def deliver_notification(deployment_id: str, notification_id: str, body: bytes) -> None:
    if not notifications.deliver(worker_context(), deployment_id, notification_id, body, _attempt()):
        raise dramatiq.Retry("not delivered")


@dramatiq.actor(actor_name=REPORT_ACTOR, **INTEGRATION_ACTOR)
def report_commit_status(build_id: str, event: str) -> None:
    if not commit_status.report(worker_context(), build_id, event, _attempt()):
        raise dramatiq.Retry("not reported")


def _attempt() -> int:
    """1 for a message's first try, then one more per retry (an exception, or dramatiq.Retry)."""
    return CurrentMessage.get_current_message().options.get("retries", 0) + 1
