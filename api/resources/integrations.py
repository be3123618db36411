"""A deployment's integrations (docs/INTEGRATIONS.md): its notification targets (add, list,
remove, their last deliveries) and where its builds report their commit status (set, show, turn
off). The secrets they hold are write-only — a target's signing secret is shown once, a
provider's token never — and encrypted before they reach Redis (common/build_secrets.py): without
a secrets key the farm refuses them (503) rather than keep them in plain text."""

from __future__ import annotations

import falcon

from api.auth import principal
from api.errors import conflict, not_found, unprocessable
from api.lookups import find_deployment
from api.store import RecordStore, new_id
from api.validation import check_git_host, is_uuid, read_json
from common.build_secrets import KEY_SETTING, SecretCipher
from common.config import Config
from common.contract import (
    MAX_NOTIFICATIONS,
    NOTIFICATION_EVENTS,
    CommitStatus,
    CommitStatusTarget,
    NewNotification,
    Notification,
)
from common.integrations import PROVIDER_APIS, new_signing_secret, repository_of
from common.models import Deployment, SourceType, utc_now
from common.outbound import OutboundRule
from common.records.integrations import (
    DeploymentGone,
    StoredCommitStatus,
    StoredNotification,
    TooManyNotifications,
)


def _public(target: StoredNotification, secret: str | None = None) -> Notification:
    notification = Notification(target.id, target.url, target.events, target.format, target.created_at)
    if secret is not None:
        notification.secret = secret
    return notification


class _Integration:
    def __init__(self, config: Config, store: RecordStore, cipher: SecretCipher | None) -> None:
        self.config = config
        self.store = store
        self.cipher = cipher
        self.outbound = OutboundRule(config.outbound_networks)

    def _require_cipher(self) -> SecretCipher:
        if self.cipher is None:
            raise falcon.HTTPServiceUnavailable(
                description=f"Secrets are not configured on this farm (its operator sets {KEY_SETTING})"
            )
        return self.cipher


class NotificationsResource(_Integration):
    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        resp.media = [_public(target) for target in await self.store.notifications(deployment.id)]

    async def on_post(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        cipher = self._require_cipher()
        new = await read_json(req, self.config.max_json_bytes, NewNotification)
        await check_git_host(new.url, self.outbound, field="url")
        secret = new_signing_secret()
        events = [event for event in NOTIFICATION_EVENTS if event in new.events]
        target = StoredNotification(
            id=new_id(),
            url=new.url,
            events=events,
            format=new.format,
            created_at=utc_now(),
            secret_token=cipher.encrypt(secret),
        )
        try:
            await self.store.add_notification(deployment.id, target)
        except DeploymentGone:
            raise not_found("Deployment not found") from None
        except TooManyNotifications:
            raise conflict(
                f"A deployment has at most {MAX_NOTIFICATIONS} notification targets: delete one first"
            ) from None
        resp.status = falcon.HTTP_201
        resp.media = _public(target, secret)

    async def on_delete_item(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, notification_id: str
    ) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        if not (
            is_uuid(notification_id) and await self.store.delete_notification(deployment.id, notification_id)
        ):
            raise not_found("Notification target not found")
        resp.status = falcon.HTTP_204

    async def on_get_deliveries(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, notification_id: str
    ) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        if not (is_uuid(notification_id) and await self.store.notification(deployment.id, notification_id)):
            raise not_found("Notification target not found")
        resp.media = await self.store.deliveries(notification_id)


class CommitStatusResource(_Integration):
    async def on_get(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        target = await self.store.commit_status(deployment.id)
        if target is None:
            raise not_found("This deployment reports no commit status")
        resp.media = CommitStatus(target.provider, target.api_url, target.repository)

    async def on_put(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        if deployment.source_type != SourceType.GIT:
            raise conflict("Only git deployments have commits to report a status on")
        cipher = self._require_cipher()
        new = await read_json(req, self.config.max_json_bytes, CommitStatusTarget)
        api_url = (new.api_url or PROVIDER_APIS[new.provider]).rstrip("/")
        await check_git_host(api_url, self.outbound, field="api_url")
        target = StoredCommitStatus(
            new.provider, api_url, _repository(deployment, new.repository), cipher.encrypt(new.token)
        )
        try:
            await self.store.set_commit_status(deployment.id, target)
        except DeploymentGone:
            raise not_found("Deployment not found") from None
        resp.media = CommitStatus(target.provider, target.api_url, target.repository)

    async def on_delete(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        if not await self.store.delete_commit_status(deployment.id):
            raise not_found("This deployment reports no commit status")
        resp.status = falcon.HTTP_204


def _repository(deployment: Deployment, given: str | None) -> str:
    repository = given or repository_of(deployment.repo_url or "")
    if repository is None:
        raise unprocessable("Field 'repository' is required: the deployment's repo_url names no owner/name")
    return repository
