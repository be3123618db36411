"""Git push webhooks: POST /api/v1/webhooks/github/{deployment_id} and …/gitlab/{deployment_id}
(POST /deployments/{id}/webhook-secret replaces a deployment's secret: api/resources/deployments.py).

A webhook carries no bearer token (api/auth.py leaves /api/v1/webhooks/ alone): it proves
itself with its deployment's webhook secret, checked in constant time — GitHub signs the raw
body (X-Hub-Signature-256: sha256=<hex HMAC-SHA256>), GitLab sends the secret itself
(X-Gitlab-Token). A push to the deployment's branch builds exactly the pushed commit through
the same steps as POST …/deploy; other events, other branches, tags and branch deletions are
acknowledged (202) and ignored. A redelivery (same delivery id, 24 h) gets the build the first
delivery created. docs/WEBHOOKS.md has the design and the provider settings.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re

import falcon

from api.errors import bad_request, unprocessable
from api.store import RecordStore
from api.submission import BuildSubmission, render_queued
from api.validation import check_request_key, is_uuid, parse_json, read_body
from common.config import Config
from common.contract import CommitSha, DeployRequest, PushPayload, WebhookAck
from common.models import Deployment
from common.records import keys

_COMMIT = CommitSha.__metadata__[0]  # the contract's commit pattern, and what it says
_BRANCH_REF = "refs/heads/"
_NO_COMMIT = "0" * 40  # the "after" of a branch deletion


def _unauthorized(message: str) -> falcon.HTTPError:
    return falcon.HTTPUnauthorized(description=message, challenges=['Signature realm="buildfarm-webhooks"'])


def _acknowledge(resp: falcon.Response, status: str, message: str) -> None:
    resp.status = falcon.HTTP_200 if status == "ok" else falcon.HTTP_202
    resp.media = WebhookAck(status, message)


class _PushWebhook:
    """What GitHub and GitLab share; the subclasses name their headers and fields."""

    public = True  # a delivery proves itself by its deployment's secret, not a bearer token

    provider: str
    credential_header: str
    event_header: str
    push_event: str
    ping_event: str | None = None  # a test event that starts no build: proves the URL and the secret
    # Headers that stay the same when the provider redelivers an event, in order of preference.
    delivery_headers: tuple[str, ...]
    # The payload's fields that may name the pushed commit, in order of preference.
    commit_fields: tuple[str, ...]

    def __init__(self, config: Config, store: RecordStore, submission: BuildSubmission) -> None:
        self.config = config
        self.store = store
        self.submission = submission

    def verify(self, secret: str, raw: bytes, credential: str) -> bool:
        raise NotImplementedError

    async def on_post(self, req: falcon.Request, resp: falcon.Response, deployment_id: str) -> None:
        # The signature covers the exact bytes, so they are read raw (capped like any JSON) and
        # parsed only once they are authenticated.
        raw = await read_body(req, self.config.max_json_bytes)
        credential = req.get_header(self.credential_header)
        if not credential:
            raise _unauthorized(f"Missing {self.credential_header}: give the webhook its deployment's secret")
        deployment = await self._authenticate(deployment_id, raw, credential)
        event = req.get_header(self.event_header)
        if not event:
            raise bad_request(f"Missing {self.event_header} header")
        if event != self.push_event:
            parse_json(raw, req.content_type, dict)  # still a JSON object
            if event == self.ping_event:
                _acknowledge(resp, "ok", f"Webhook verified for deployment {deployment.id}")
            else:
                _acknowledge(resp, "ignored", f"Event '{event}' ignored: only pushes start builds")
            return
        payload = parse_json(raw, req.content_type, PushPayload)
        given = [name for name in self.commit_fields if getattr(payload, name) is not None]
        field = given[0] if given else self.commit_fields[-1]
        sha = getattr(payload, field)
        if skipped := _skip_reason(deployment, payload, sha):
            _acknowledge(resp, "ignored", skipped)
            return
        if sha is None or not re.search(_COMMIT.pattern, sha):
            raise unprocessable(f"Field '{field}' must be {_COMMIT.description}")
        await self._build(req, resp, deployment, sha)

    async def _authenticate(self, deployment_id: str, raw: bytes, credential: str) -> Deployment:
        # An unknown id, an archive deployment (it has no secret) and a wrong secret all get
        # the same answer: nothing tells an unauthenticated caller which deployments exist.
        deployment = await self.store.get_any_deployment(deployment_id) if is_uuid(deployment_id) else None
        secret = deployment.webhook_secret if deployment is not None else None
        if not secret or not self.verify(secret, raw, credential):
            raise _unauthorized(f"{self.credential_header} does not match the deployment's webhook secret")
        return deployment

    async def _build(
        self, req: falcon.Request, resp: falcon.Response, deployment: Deployment, sha: str
    ) -> None:
        delivery = self._delivery_id(req)
        once = keys.webhook_delivery(deployment.id, self.provider, delivery) if delivery else None
        claim = functools.partial(self.store.claim_once, once) if once else None
        try:
            build = await self.submission.deploy(deployment, DeployRequest(commit_sha=sha), claim)
        except (falcon.HTTPServiceUnavailable, falcon.HTTPTooManyRequests):
            # The build was marked failed, or not stored (the tenant's queue was full): a
            # redelivery must try again, not get that build.
            if once:
                await self.store.forget(once)
            raise
        render_queued(resp, build)

    def _delivery_id(self, req: falcon.Request) -> str | None:
        for header in self.delivery_headers:
            if value := req.get_header(header):
                return check_request_key(header, value)
        return None  # no dedupe: every delivery builds


def _skip_reason(deployment: Deployment, payload: PushPayload, sha: str | None) -> str | None:
    """Why a push starts no build, or None when it builds."""
    if not payload.ref.startswith(_BRANCH_REF):
        return f"Push to '{payload.ref}' ignored: only branch pushes are built"
    branch = payload.ref.removeprefix(_BRANCH_REF)
    if branch != deployment.branch:
        return f"Push to branch '{branch}' ignored: this deployment builds '{deployment.branch}'"
    if sha == _NO_COMMIT or payload.deleted:
        return f"Branch '{branch}' was deleted: nothing to build"
    return None


class GitHubWebhookResource(_PushWebhook):
    provider = "github"
    credential_header = "X-Hub-Signature-256"
    event_header = "X-GitHub-Event"
    push_event = "push"
    ping_event = "ping"  # sent when the webhook is created
    delivery_headers = ("X-GitHub-Delivery",)  # the same GUID on a redelivery
    commit_fields = ("after",)

    def verify(self, secret: str, raw: bytes, credential: str) -> bool:
        scheme, _, given = credential.partition("=")
        expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
        return scheme == "sha256" and hmac.compare_digest(expected.encode(), given.encode())


class GitLabWebhookResource(_PushWebhook):
    provider = "gitlab"
    credential_header = "X-Gitlab-Token"
    event_header = "X-Gitlab-Event"
    push_event = "Push Hook"
    # Idempotency-Key (GitLab 17.4+) survives retries; older GitLab: the event's UUID.
    delivery_headers = ("Idempotency-Key", "X-Gitlab-Event-UUID")
    # checkout_sha is null when the push deleted the branch; "after" is then all zeros.
    commit_fields = ("checkout_sha", "after")

    def verify(self, secret: str, raw: bytes, credential: str) -> bool:
        return hmac.compare_digest(secret.encode(), credential.encode())
