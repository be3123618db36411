"""A build's events to its deployment's integrations (docs/INTEGRATIONS.md). The pipeline
announces an event (`announce`: a queue message, only for deployments that have integrations);
a worker's actor then fans it out (`fan_out`): one delivery per notification target that wants
the event (worker/notifications.py) and one commit status report (worker/commit_status.py), each
a message of its own, retried on its own. Nothing here may fail or hold up a build."""

from __future__ import annotations

import logging

import dramatiq

from common import contract
from common.integrations import DELIVER_ACTOR, REPORT_ACTOR, announcement, event_id, integration_message
from common.models import Build, utc_now
from worker.context import WorkerContext

logger = logging.getLogger("buildfarm.integrations")


def announce(ctx: WorkerContext, build: Build, event: str) -> None:
    """Queues the announcement of a build's event, if its deployment has integrations; a failure
    is logged, never raised (the build goes on, the event is lost)."""
    try:
        if ctx.records.has_integrations(build.deployment_id):
            dramatiq.get_broker().enqueue(announcement(ctx.config, build.id, event))
    except Exception:
        logger.exception("build %s: could not announce %s", build.id, event)


def build_page(ctx: WorkerContext, build: Build) -> str | None:
    """The build's page on the dashboard, where the farm says its public address."""
    base = ctx.config.public_url.rstrip("/")
    return f"{base}/#/deployments/{build.deployment_id}/builds/{build.id}" if base else None


def fan_out(ctx: WorkerContext, build_id: str, event: str) -> None:
    """One message per delivery of `event`: the JSON event to each target that wants it, and the
    commit status. The event's id is the same however often this runs for it."""
    build = ctx.records.load(build_id)
    if build is None:
        return
    broker = dramatiq.get_broker()
    targets = [t for t in ctx.records.notifications(build.deployment_id) if event in t.events]
    if targets:
        deployment = ctx.records.get_any_deployment(build.deployment_id)
        if deployment is None:
            return
        identity = event_id(build.id, event)
        body = contract.encode(
            contract.BuildEvent(
                id=identity,
                type=event,
                created_at=utc_now(),
                deployment=contract.DeploymentRef(deployment.id, deployment.name, deployment.subdomain),
                build=contract.public_build(build),
                url=build_page(ctx, build),
            )
        )
        for target in targets:
            broker.enqueue(
                integration_message(ctx.config, DELIVER_ACTOR, build.deployment_id, target.id, body)
            )
    if ctx.records.commit_status(build.deployment_id) is not None:
        broker.enqueue(integration_message(ctx.config, REPORT_ACTOR, build.id, event))
