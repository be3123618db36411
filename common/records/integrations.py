"""The operations on a deployment's integrations (docs/INTEGRATIONS.md): its notification targets
(a hash, id → target as JSON) with each target's last deliveries (a capped list), and where its
builds report their commit status (a string of JSON). The secrets they hold — a target's signing
key, a provider's token — are Fernet tokens (common/build_secrets.py): the API encrypts them, the
worker that delivers decrypts them. Deleting the deployment deletes them all."""

from __future__ import annotations

import msgspec

from common.contract import MAX_NOTIFICATIONS, Delivery
from common.records import keys, scripts
from common.records.call import Call, Steps, first
from common.records.secrets import DeploymentGone

# Deliveries kept per target (the API shows them), and for how long after the last one.
MAX_DELIVERIES = 20
DELIVERIES_TTL_S = 30 * 24 * 3600
# How long a build's furthest reported commit status is remembered (its retries end well before).
STATUS_RANK_TTL_S = 7 * 24 * 3600

__all__ = ["DeploymentGone", "StoredCommitStatus", "StoredNotification", "TooManyNotifications"]


class TooManyNotifications(Exception):
    """Raised when a deployment would get more than MAX_NOTIFICATIONS notification targets."""


class StoredNotification(msgspec.Struct):
    id: str
    url: str
    events: list[str]
    format: str
    created_at: str
    # The signing secret, encrypted.
    secret_token: str


class StoredCommitStatus(msgspec.Struct):
    provider: str
    api_url: str
    repository: str
    # The provider's token, encrypted.
    token: str


_encode = msgspec.json.Encoder().encode
_notification = msgspec.json.Decoder(StoredNotification).decode
_commit_status = msgspec.json.Decoder(StoredCommitStatus).decode
_delivery = msgspec.json.Decoder(Delivery).decode


def add_notification(deployment_id: str, target: StoredNotification) -> Call[None]:
    def parse(reply: int) -> None:
        if reply == -1:
            raise DeploymentGone(deployment_id)
        if reply == -2:
            raise TooManyNotifications(MAX_NOTIFICATIONS)

    # The secrets' script: a field of a per-deployment hash, set while the deployment exists, capped.
    return Call(
        parse,
        script=scripts.SET_SECRET,
        keys=[keys.deployment(deployment_id), keys.deployment_notifications(deployment_id)],
        args=[target.id, _encode(target), MAX_NOTIFICATIONS],
    )


def notifications(deployment_id: str) -> Call[list[StoredNotification]]:
    """A deployment's notification targets, oldest first."""
    return Call(
        lambda replies: sorted(
            (_notification(raw) for raw in replies[0]), key=lambda t: (t.created_at, t.id)
        ),
        commands=[("HVALS", keys.deployment_notifications(deployment_id))],
    )


def notification(deployment_id: str, notification_id: str) -> Call[StoredNotification | None]:
    return Call(
        lambda replies: _notification(replies[0]) if replies[0] else None,
        commands=[("HGET", keys.deployment_notifications(deployment_id), notification_id)],
    )


def delete_notification(deployment_id: str, notification_id: str) -> Call[bool]:
    """Deletes a target and its deliveries; False if the deployment had no such target."""
    return Call(
        lambda replies: bool(replies[0]),
        commands=[
            ("HDEL", keys.deployment_notifications(deployment_id), notification_id),
            ("DEL", keys.notification_deliveries(notification_id)),
        ],
    )


def record_delivery(notification_id: str, delivery: Delivery) -> Call[None]:
    name = keys.notification_deliveries(notification_id)
    return Call(
        lambda _: None,
        commands=[
            ("LPUSH", name, _encode(delivery)),
            ("LTRIM", name, 0, MAX_DELIVERIES - 1),
            ("EXPIRE", name, DELIVERIES_TTL_S),
        ],
    )


def deliveries(notification_id: str) -> Call[list[Delivery]]:
    """A target's last deliveries, newest first."""
    return Call(
        lambda replies: [_delivery(raw) for raw in replies[0]],
        commands=[("LRANGE", keys.notification_deliveries(notification_id), 0, MAX_DELIVERIES - 1)],
    )


def set_commit_status(deployment_id: str, target: StoredCommitStatus) -> Call[None]:
    def parse(reply: int) -> None:
        if not reply:
            raise DeploymentGone(deployment_id)

    return Call(
        parse,
        script=scripts.SET_IF_EXISTS,
        keys=[keys.deployment(deployment_id), keys.deployment_commit_status(deployment_id)],
        args=[_encode(target)],
    )


def commit_status(deployment_id: str) -> Call[StoredCommitStatus | None]:
    return Call(
        lambda replies: _commit_status(replies[0]) if replies[0] else None,
        commands=[("GET", keys.deployment_commit_status(deployment_id))],
    )


def delete_commit_status(deployment_id: str) -> Call[bool]:
    """Turns commit status reporting off; False if it was not on."""
    return Call(
        lambda replies: bool(replies[0]), commands=[("DEL", keys.deployment_commit_status(deployment_id))]
    )


def has_integrations(deployment_id: str) -> Call[bool]:
    """Whether a deployment's builds have anyone to tell: then their events are announced."""
    return Call(
        lambda replies: bool(replies[0]),
        commands=[
            (
                "EXISTS",
                keys.deployment_notifications(deployment_id),
                keys.deployment_commit_status(deployment_id),
            )
        ],
    )


def claim_status_rank(build_id: str, rank: int) -> Call[bool]:
    """True if a build's commit status of this rank may be sent: no later state was sent yet."""
    return Call(
        bool,
        script=scripts.RAISE_RANK,
        keys=[keys.commit_status_sent(build_id)],
        args=[rank, STATUS_RANK_TTL_S],
    )


def forget_integrations(deployment_id: str) -> Steps[None]:
    """Deletes a deleted deployment's targets, their deliveries and its commit status settings."""
    hash_name = keys.deployment_notifications(deployment_id)
    ids = yield Call(first, commands=[("HKEYS", hash_name)])
    doomed = [keys.notification_deliveries(raw.decode()) for raw in ids]
    yield Call(
        lambda _: None, commands=[("DEL", hash_name, keys.deployment_commit_status(deployment_id), *doomed)]
    )
