"""The API's adapter over the Redis data model (common.records): runs the model's operations
that the API calls, each as a method of its name, on the asyncio client. It holds no rules."""

from __future__ import annotations

import secrets
import uuid

from common.records import builds, deployments
from common.records.call import AsyncRunner
from common.records.deployments import ActiveBuilds, SubdomainTaken
from common.tokens import Principal, authenticate

__all__ = ["ActiveBuilds", "Principal", "RecordStore", "SubdomainTaken", "new_id", "new_webhook_secret"]


class RecordStore(AsyncRunner):
    operations = (
        authenticate,
        deployments.create_deployment,
        deployments.get_deployment,
        deployments.get_any_deployment,
        deployments.set_webhook_secret,
        deployments.list_deployments,
        deployments.deployment_statuses,
        deployments.delete_deployment,
        deployments.record_upload,
        deployments.claim_idempotency_key,
        deployments.claim_webhook_delivery,
        deployments.release_webhook_delivery,
        builds.create_build,
        builds.get_build,
        builds.list_builds,
        builds.transition,
        builds.supersede_queued,
        builds.request_cancel,
    )


def new_id() -> str:
    return str(uuid.uuid4())


def new_webhook_secret() -> str:
    """A deployment's webhook secret: 256 random bits as hex (any webhook form takes it as is)."""
    return secrets.token_hex(32)
