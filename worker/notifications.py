"""Delivers one event to one notification target (docs/INTEGRATIONS.md): the JSON event, or its
Slack form, signed with the target's secret (X-Buildfarm-Signature: t=…,v1=…) and carrying its
id (X-Buildfarm-Event-Id), so a receiver can refuse replays and count an event once however often
it comes. Each attempt is recorded (the API shows the last ones); an attempt without a 2xx
answer is retried by the actor, with backoff."""

from __future__ import annotations

import logging
import time

import msgspec

from common import contract
from common.integrations import EVENT_HEADER, EVENT_ID_HEADER, SIGNATURE_HEADER, signature
from common.models import utc_now
from worker import metrics
from worker.context import WorkerContext
from worker.outbound_http import attempt, decrypted

logger = logging.getLogger("buildfarm.integrations")

_event = msgspec.json.Decoder(contract.BuildEvent).decode
# What a Slack message says of each event.
_SAID = {
    "build.started": "started",
    "build.succeeded": "succeeded",
    "build.failed": "failed",
    "build.cancelled": "was cancelled",
}


def slack_message(event: contract.BuildEvent) -> bytes:
    """An incoming webhook's message: one line of text, with a link to the build."""
    build, deployment = event.build, event.deployment
    text = f"Build #{build.number} of {deployment.name} ({deployment.subdomain}) {_SAID[event.type]}"
    if build.commit_sha:
        text += f" ({build.commit_sha[:8]})"
    if build.error:
        text += f": {build.error}"
    if event.url:
        text += f" <{event.url}|View build>"
    return contract.encode({"text": text})


def deliver(
    ctx: WorkerContext, deployment_id: str, notification_id: str, body: bytes, attempt_number: int
) -> bool:
    """One attempt; False when it should be tried again (no 2xx answer), True when it is done:
    delivered, or the target is gone or refused (retries would not help)."""
    target = ctx.records.notification(deployment_id, notification_id)
    if target is None:
        return True  # removed meanwhile
    event = _event(body)
    payload = slack_message(event) if target.format == "slack" else body

    def headers() -> dict[str, str]:
        secret = decrypted(ctx.config, target.secret_token)
        return {
            SIGNATURE_HEADER: signature(secret, int(time.time()), payload),
            EVENT_ID_HEADER: event.id,
            EVENT_HEADER: event.type,
        }

    started = time.monotonic()
    outcome = attempt(ctx.config, target.url, payload, headers)
    delivery = contract.Delivery(
        event_id=event.id,
        event=event.type,
        build_id=event.build.id,
        attempt=attempt_number,
        at=utc_now(),
        delivered=outcome.ok,
        status_code=outcome.status_code,
        answer=outcome.text[:1024],
        duration_ms=round((time.monotonic() - started) * 1000),
    )
    ctx.records.record_delivery(notification_id, delivery)
    metrics.integration_request("notification", outcome.ok)
    said = f"answered {outcome.status_code}" if outcome.status_code is not None else outcome.text
    logger.info(
        "build %s: %s to notification %s, attempt %s: %s",
        event.build.id,
        event.type,
        notification_id,
        attempt_number,
        "delivered" if outcome.ok else said,
    )
    return outcome.ok or outcome.final
