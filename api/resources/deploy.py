"""POST /deployments/{id}/deploy: a new pending build, queued for the workers (api/submission.py)."""

from __future__ import annotations

import functools

import falcon

from api.auth import principal
from api.lookups import find_deployment
from api.store import RecordStore
from api.submission import BuildSubmission, render_queued
from api.validation import check_request_key, read_json
from common.config import Config
from common.contract import DeployRequest


class DeployResource:
    def __init__(self, config: Config, store: RecordStore, submission: BuildSubmission) -> None:
        self.config = config
        self.store = store
        self.submission = submission

    async def on_post(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        deployment = await find_deployment(self.store, principal(req).tenant, deployment_id)
        body = await read_json(req, self.config.max_json_bytes, DeployRequest, allow_empty=True)
        claim = None
        key = req.get_header("Idempotency-Key")
        if key is not None:
            check_request_key("Idempotency-Key", key)
            claim = functools.partial(self.store.claim_idempotency_key, deployment, key)
        build = await self.submission.deploy(deployment, body.commit_sha, claim)
        render_queued(resp, build)
