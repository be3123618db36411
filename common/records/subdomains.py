"""Who holds a subdomain: the tenant of the deployment that has it, or the tenant a deleted
deployment left it reserved to (its tombstone: images pulled by that name must never come from
someone else); and an admin's freeing of a tombstone."""

from __future__ import annotations

from common.records import fields, keys
from common.records.call import Call, Steps, text


def subdomain_holder(name: str) -> Steps[str | None]:
    """The tenant that holds the subdomain, live or tombstoned; None if nobody does."""
    deployment_id, reserved_to = yield Call(
        lambda replies: [text(reply) for reply in replies],
        commands=[("GET", keys.subdomain(name)), ("GET", keys.subdomain_tombstone(name))],
    )
    if deployment_id is None:
        return reserved_to
    return (
        yield Call(
            lambda replies: text(replies[0]),
            commands=[("HGET", keys.deployment(deployment_id), fields.TENANT)],
        )
    )


def free_subdomain(name: str) -> Call[str | None]:
    """Drops a subdomain's tombstone, so that any tenant may take it; returns the tenant it was
    reserved to (None: it had no tombstone)."""
    tombstone = keys.subdomain_tombstone(name)
    return Call(lambda replies: text(replies[0]), commands=[("GET", tombstone), ("DEL", tombstone)])
