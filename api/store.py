"""The API's adapter over the Redis data model (common.records): runs the model's operations,
each as a method of its name, on the asyncio client. It holds no rules."""

from __future__ import annotations

import secrets
import uuid

from common import tokens
from common.records import builds, deployments, integrations, slots, usage, workers
from common.records import secrets as secret_records
from common.records.call import AsyncRunner
from common.records.deployments import ActiveBuilds, SubdomainReserved, SubdomainTaken
from common.records.secrets import DeploymentGone, TooManySecrets
from common.tokens import Principal

__all__ = [
    "ActiveBuilds",
    "DeploymentGone",
    "Principal",
    "RecordStore",
    "SubdomainReserved",
    "SubdomainTaken",
    "TooManySecrets",
    "new_id",
    "new_webhook_secret",
]


class RecordStore(AsyncRunner):
    modules = (tokens, deployments, builds, secret_records, workers, slots, usage, integrations)


def new_id() -> str:
    return str(uuid.uuid4())


def new_webhook_secret() -> str:
    """A deployment's webhook secret: 256 random bits as hex (any webhook form takes it as is)."""
    return secrets.token_hex(32)
