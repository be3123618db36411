"""Deployments: create, list, get, delete; upload a source archive; trigger a build."""

from __future__ import annotations

import falcon

from api.auth import principal
from api.errors import conflict, not_found
from api.paging import next_link, paging_params
from api.store import ActiveBuilds, RecordStore, SubdomainTaken, new_id, new_webhook_secret
from api.validation import (
    Field,
    check_branch,
    check_dockerfile_path,
    check_name,
    check_range,
    check_subdomain,
    git_url_checker,
    is_uuid,
    read_json,
    validate,
)
from common.config import Config
from common.models import Deployment, SourceType, utc_now


def deployment_schema(config: Config) -> dict[str, Field]:
    return {
        "name": Field(str, required=True, max_length=100, check=check_name),
        "subdomain": Field(str, required=True, max_length=63, check=check_subdomain),
        "source_type": Field(
            str, check=lambda v: None if v in ("git", "archive") else "must be 'git' or 'archive'"
        ),
        "repo_url": Field(str, max_length=2048, check=git_url_checker(config.git_schemes)),
        "branch": Field(str, max_length=255, check=check_branch),
        "dockerfile_path": Field(str, max_length=255, check=check_dockerfile_path),
        "build_timeout_s": Field(int, check=check_range(1, MAX_BUILD_TIMEOUT_S)),
        "supersede_queued": Field(bool),
    }


MAX_BUILD_TIMEOUT_S = 24 * 3600


async def find_deployment(store: RecordStore, req: falcon.Request, deployment_id: str) -> Deployment:
    deployment = None
    if is_uuid(deployment_id):
        deployment = await store.get_deployment(principal(req).tenant, deployment_id)
    if deployment is None:
        raise not_found("Deployment not found")
    return deployment


class DeploymentsResource:
    def __init__(self, config: Config, store: RecordStore) -> None:
        self.config = config
        self.store = store
        self.schema = deployment_schema(config)

    async def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        limit, before = paging_params(req)
        rows, next_cursor = await self.store.list_deployments(principal(req).tenant, limit, before)
        resp.media = [deployment.to_public(status) for deployment, status in rows]
        if next_cursor is not None:
            resp.append_link(next_link(req, limit, next_cursor), "next")

    async def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        fields = validate(await read_json(req, self.config.max_json_bytes), self.schema)
        source_type = fields.get("source_type", SourceType.GIT.value)
        if source_type == SourceType.GIT:
            if "repo_url" not in fields:
                raise falcon.HTTPUnprocessableEntity(
                    description="Field 'repo_url' is required for git deployments"
                )
        elif "repo_url" in fields or "branch" in fields:
            raise falcon.HTTPUnprocessableEntity(
                description="Archive deployments take no 'repo_url' or 'branch'"
            )
        now = utc_now()
        deployment = Deployment(
            id=new_id(),
            tenant=principal(req).tenant,
            name=fields["name"],
            subdomain=fields["subdomain"],
            source_type=source_type,
            repo_url=fields.get("repo_url"),
            branch=fields.get("branch", "main") if source_type == SourceType.GIT else None,
            dockerfile_path=fields.get("dockerfile_path", "Dockerfile"),
            build_timeout_s=fields.get("build_timeout_s", 0),
            supersede_queued=fields.get("supersede_queued", False),
            webhook_secret=new_webhook_secret() if source_type == SourceType.GIT else None,
            created_at=now,
            updated_at=now,
        )
        try:
            await self.store.create_deployment(deployment)
        except SubdomainTaken:
            raise conflict(f"Subdomain '{deployment.subdomain}' is already taken") from None
        resp.status = falcon.HTTP_201
        resp.location = f"{req.path}/{deployment.id}"
        resp.media = deployment.to_public(status="created")
        if deployment.webhook_secret:
            # Shown this once (POST …/webhook-secret makes a new one): docs/WEBHOOKS.md.
            resp.media["webhook_secret"] = deployment.webhook_secret

    async def on_get_item(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        [status] = await self.store.deployment_statuses([deployment])
        resp.media = deployment.to_public(status)

    async def on_delete_item(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, req, deployment_id)
        try:
            await self.store.delete_deployment(deployment)
        except ActiveBuilds as e:
            raise conflict(
                f"Deployment has {e.args[0]} pending or running build(s): cancel them first"
            ) from None
        resp.status = falcon.HTTP_204
