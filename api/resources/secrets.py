"""A deployment's build secrets: set or rotate (PUT), delete, list the names. Values are
write-only: encrypted before they reach Redis (common/build_secrets.py) and never returned;
without a secrets key the farm refuses them (503) rather than keep them in plain text."""

from __future__ import annotations

import falcon
import msgspec

from api.auth import principal
from api.errors import conflict, not_found, unprocessable
from api.lookups import find_deployment
from api.store import DeploymentGone, RecordStore, TooManySecrets
from api.validation import read_json
from common.build_secrets import KEY_SETTING, SecretCipher
from common.config import Config
from common.contract import MAX_SECRETS, SecretName, SecretNames, SecretValue

_NAME = SecretName.__metadata__[0]  # the contract's pattern, and what it says


class SecretsResource:
    def __init__(self, config: Config, store: RecordStore, cipher: SecretCipher | None) -> None:
        self.config = config
        self.store = store
        self.cipher = cipher

    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        resp.media = SecretNames(await self.store.secret_names(deployment.id))

    async def on_put_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, name: str
    ) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        _check_name(name)
        if self.cipher is None:
            raise falcon.HTTPServiceUnavailable(
                description=f"Secrets are not configured on this farm (its operator sets {KEY_SETTING})"
            )
        secret = await read_json(req, self.config.max_json_bytes, SecretValue)
        try:
            await self.store.set_secret(deployment.id, name, self.cipher.encrypt(secret.value))
        except DeploymentGone:
            raise not_found("Deployment not found") from None
        except TooManySecrets:
            raise conflict(f"A deployment has at most {MAX_SECRETS} secrets: delete one first") from None
        resp.status = falcon.HTTP_204

    async def on_delete_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, name: str
    ) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        _check_name(name)
        if not await self.store.delete_secret(deployment.id, name):
            raise not_found("Secret not found")
        resp.status = falcon.HTTP_204


def _check_name(name: str) -> None:
    try:
        msgspec.convert(name, SecretName)
    except msgspec.ValidationError:
        raise unprocessable(
            f"The secret's name must be {_NAME.description}, at most {_NAME.max_length} characters"
        ) from None
