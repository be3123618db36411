"""The operations on a deployment's build secrets: one hash per deployment, each name holding
its value encrypted (a Fernet token, common/build_secrets.py). Values are written by the API
and read back only by the worker that runs a build; deleting the deployment deletes the hash
(common/records/deployments.py)."""

from __future__ import annotations

from common.contract import MAX_SECRETS
from common.records import keys, scripts
from common.records.call import Call


class DeploymentGone(Exception):
    """Raised when a secret is set on a deployment deleted meanwhile."""


class TooManySecrets(Exception):
    """Raised when setting a new secret would give a deployment more than MAX_SECRETS."""


def set_secret(deployment_id: str, name: str, token: str) -> Call[bool]:
    """Sets or replaces (rotates) a secret; True if the name is new."""

    def parse(reply: int) -> bool:
        if reply == -1:
            raise DeploymentGone(deployment_id)
        if reply == -2:
            raise TooManySecrets(MAX_SECRETS)
        return bool(reply)

    return Call(
        parse,
        script=scripts.SET_SECRET,
        keys=[keys.deployment(deployment_id), keys.deployment_secrets(deployment_id)],
        args=[name, token, MAX_SECRETS],
    )


def delete_secret(deployment_id: str, name: str) -> Call[bool]:
    """Deletes a secret; False if the deployment had none of that name."""
    return Call(
        lambda replies: bool(replies[0]), commands=[("HDEL", keys.deployment_secrets(deployment_id), name)]
    )


def secret_names(deployment_id: str) -> Call[list[str]]:
    """The names of a deployment's secrets, sorted; never their values."""
    return Call(
        lambda replies: sorted(name.decode() for name in replies[0]),
        commands=[("HKEYS", keys.deployment_secrets(deployment_id))],
    )


def secret_tokens(deployment_id: str) -> Call[dict[str, str]]:
    """Every secret of a deployment, name → its encrypted value, for the worker to decrypt."""
    return Call(
        lambda replies: {name.decode(): token.decode() for name, token in replies[0].items()},
        commands=[("HGETALL", keys.deployment_secrets(deployment_id))],
    )
