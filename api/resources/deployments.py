"""Deployments: create, list, get, change, delete, and deploy (a new build, queued by
api/submission.py)."""

from __future__ import annotations

import functools

import falcon
import msgspec

from api.auth import principal
from api.errors import conflict, not_found, unprocessable
from api.lookups import find_deployment
from api.paging import link_next_page, paging_params
from api.store import ActiveBuilds, RecordStore, SubdomainReserved, SubdomainTaken, new_id, new_webhook_secret
from api.submission import BuildSubmission, render_queued
from api.validation import check_build_timeout, check_git_host, check_git_url, check_request_key, read_json
from common.config import Config
from common.contract import (
    DeploymentUpdate,
    DeployRequest,
    NewDeployment,
    WebhookSecret,
    public_deployment,
)
from common.models import DEPLOYMENT_CREATED, Deployment, SourceType, json_text, utc_now
from common.outbound import OutboundRule
from common.records import keys


class DeploymentsResource:
    def __init__(self, config: Config, store: RecordStore, submission: BuildSubmission) -> None:
        self.config = config
        self.store = store
        self.submission = submission
        self.outbound = OutboundRule(config.outbound_networks)

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, before = paging_params(req)
        rows, next_cursor = await self.store.list_deployments(principal(req).tenant, limit, before)
        resp.media = [public_deployment(deployment, status) for deployment, status in rows]
        link_next_page(req, resp, limit, next_cursor)

    async def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        new = await read_json(req, self.config.max_json_bytes, NewDeployment)
        check_build_timeout(new.build_timeout_s, self.config.build_timeout_s)
        if new.repo_url is not None:
            check_git_url(new.repo_url, self.config.git_schemes)
            await check_git_host(new.repo_url, self.outbound)
        now = utc_now()
        settings = _as_stored(msgspec.structs.asdict(new))
        deployment = Deployment(
            id=new_id(),
            tenant=principal(req).tenant,
            webhook_secret=new_webhook_secret() if new.source_type == SourceType.GIT else None,
            created_at=now,
            updated_at=now,
            **settings,
        )
        try:
            await self.store.create_deployment(deployment)
        except SubdomainTaken:
            raise conflict(f"Subdomain '{deployment.subdomain}' is already taken") from None
        except SubdomainReserved:
            raise conflict(
                f"Subdomain '{deployment.subdomain}' is reserved: a deleted deployment used it, and its "
                "images may still be pulled by that name. Only its owner can take it again, unless an "
                "admin frees it"
            ) from None
        resp.status = falcon.HTTP_201
        resp.location = f"{req.path}/{deployment.id}"
        created = public_deployment(deployment, DEPLOYMENT_CREATED)
        if deployment.webhook_secret:
            # Shown this once (POST …/webhook-secret makes a new one): docs/WEBHOOKS.md.
            created.webhook_secret = deployment.webhook_secret
        resp.media = created

    async def on_get_item(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        [status] = await self.store.deployment_statuses([deployment])
        resp.media = public_deployment(deployment, status)

    async def on_patch_item(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        """The fields given replace the deployment's, for its next builds; `{}` changes nothing."""
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        update = await read_json(req, self.config.max_json_bytes, DeploymentUpdate)
        given = {k: v for k, v in msgspec.structs.asdict(update).items() if v is not msgspec.UNSET}
        check_build_timeout(given.get("build_timeout_s"), self.config.build_timeout_s)
        if "branch" in given and deployment.source_type != SourceType.GIT:
            raise unprocessable("Archive deployments have no 'branch': only git deployments build one")
        given = _as_stored(given)
        if given:
            deployment = msgspec.structs.replace(deployment, **given, updated_at=utc_now())
            stored = deployment.to_redis()
            # A setting given empty (no build args) is cleared: it reads back as absent.
            changes = {name: stored.get(name, "") for name in (*given, "updated_at")}
            if not await self.store.update_deployment(deployment.id, changes):
                raise not_found("Deployment not found")
        [status] = await self.store.deployment_statuses([deployment])
        resp.media = public_deployment(deployment, status)

    async def on_delete_item(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        try:
            await self.store.delete_deployment(deployment)
        except ActiveBuilds as e:
            raise conflict(
                f"Deployment has {e.args[0]} pending or running build(s): cancel them first"
            ) from None
        resp.status = falcon.HTTP_204

    async def on_post_deploy(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        body = await read_json(req, self.config.max_json_bytes, DeployRequest, allow_empty=True)
        claim = None
        key = req.get_header("Idempotency-Key")
        if key is not None:
            check_request_key("Idempotency-Key", key)
            claim = functools.partial(
                self.store.claim_once, keys.idempotency(deployment.tenant, deployment.id, key)
            )
        render_queued(resp, await self.submission.deploy(deployment, body, claim))

    async def on_post_webhook_secret(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str
    ) -> None:
        """A new push webhook secret (api/resources/webhooks.py), shown once; the old one stops
        working at once."""
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        if deployment.source_type != SourceType.GIT:
            raise conflict("Archive deployments have no webhooks: only git deployments build on push")
        secret = new_webhook_secret()
        if not await self.store.set_webhook_secret(deployment.id, secret):
            raise not_found("Deployment not found")
        resp.media = WebhookSecret(secret)


def _as_stored(settings: dict) -> dict:
    """Settings as the record keeps them: a null timeout (the farm's default) as 0, the build
    args as JSON text."""
    stored = dict(settings)
    if "build_timeout_s" in stored:
        stored["build_timeout_s"] = stored["build_timeout_s"] or 0
    if "build_args" in stored:
        stored["build_args"] = json_text(stored["build_args"])
    return stored
