"""The app factory: config → connections → store → resources → routes."""

from __future__ import annotations

import asyncio
import logging

import falcon
import falcon.asgi
import falcon.media
import redis.asyncio as aioredis

from api.admission import TenantAdmission
from api.auth import API_PREFIX, AuthMiddleware
from api.errors import UNAVAILABLE, serialize_error, unavailable
from api.logfanout import LogFanout
from api.logreader import LogReader
from api.metrics import MetricsMiddleware, MetricsResource
from api.openapi import BUILD, DEPLOYMENT, WEBHOOKS, OpenApiResource
from api.resources.builds import BuildsResource
from api.resources.dashboard import DashboardResource
from api.resources.deployments import DeploymentsResource
from api.resources.farm import FarmResource
from api.resources.health import HealthResource
from api.resources.integrations import CommitStatusResource, NotificationsResource
from api.resources.logs import LogsResource
from api.resources.secrets import SecretsResource
from api.resources.uploads import UploadResource
from api.resources.usage import UsageResource
from api.resources.webhooks import GitHubWebhookResource, GitLabWebhookResource
from api.store import RecordStore
from api.submission import BuildSubmission
from api.ws_denial import refuse_handshake
from common import contract
from common.broker import create_broker
from common.build_secrets import SecretCipher
from common.config import Config
from common.credentials import require_strong_credentials
from common.logging_json import SERVER_LOGGERS, use_json_logging
from common.redis_clients import API_CONNECTIONS, LOG_REPLAY_CONNECTIONS, async_redis, bounded_async_redis
from common.s3 import create_s3, ensure_buckets


class ConnectionsMiddleware:
    """Owns the app's connections: checks them at startup, closes them at shutdown."""

    def __init__(
        self, config: Config, redis: aioredis.Redis, s3, log_clients: tuple[aioredis.Redis, ...]
    ) -> None:
        self.config = config
        self.redis = redis
        self.s3 = s3
        self.log_clients = log_clients

    async def process_startup(self, scope, event) -> None:
        await self.redis.ping()
        await asyncio.to_thread(ensure_buckets, self.s3, self.config)

    async def process_shutdown(self, scope, event) -> None:
        for client in (self.redis, *self.log_clients):
            await client.aclose()


def routes(
    config: Config, redis: aioredis.Redis, s3, broker, store: RecordStore, fanout: LogFanout
) -> list[tuple[str, object, str | None]]:
    """Every route as (template, resource, suffix); the OpenAPI test walks this same list."""
    admission = TenantAdmission(config, store)
    submission = BuildSubmission(config, store, broker, admission)
    deployments = DeploymentsResource(config, store, submission)
    builds = BuildsResource(store, submission)
    logs = LogsResource(store, LogReader(config, redis, s3), admission, fanout)
    dashboard = DashboardResource()
    health = HealthResource(config, redis, s3)
    secrets = SecretsResource(config, store, SecretCipher.from_config(config))
    notifications = NotificationsResource(config, store, SecretCipher.from_config(config))
    return [
        ("/", dashboard, None),
        ("/static/{name}", dashboard, "asset"),
        ("/healthz", health, "live"),
        ("/readyz", health, "ready"),
        ("/metrics", MetricsResource(config, redis, broker, store), None),
        (API_PREFIX + "/openapi.json", OpenApiResource(), None),
        (API_PREFIX + "/deployments", deployments, None),
        (DEPLOYMENT, deployments, "item"),
        (DEPLOYMENT + "/upload", UploadResource(config, store, s3, admission), None),
        (DEPLOYMENT + "/deploy", deployments, "deploy"),
        (DEPLOYMENT + "/builds", builds, None),
        (BUILD, builds, "item"),
        (BUILD + "/logs", logs, None),
        (BUILD + "/logs/stream", logs, "stream"),
        (BUILD + "/cancel", builds, "cancel"),
        (BUILD + "/retry", builds, "retry"),
        (DEPLOYMENT + "/webhook-secret", deployments, "webhook_secret"),
        (DEPLOYMENT + "/secrets", secrets, None),
        (DEPLOYMENT + "/secrets/{name}", secrets, "item"),
        (WEBHOOKS + "/github/{deployment_id}", GitHubWebhookResource(config, store, submission), None),
        (WEBHOOKS + "/gitlab/{deployment_id}", GitLabWebhookResource(config, store, submission), None),
        (API_PREFIX + "/farm", FarmResource(store), None),
        (API_PREFIX + "/usage", UsageResource(admission), None),
        (DEPLOYMENT + "/notifications", notifications, None),
        (DEPLOYMENT + "/notifications/{notification_id}", notifications, "item"),
        (DEPLOYMENT + "/notifications/{notification_id}/deliveries", notifications, "deliveries"),
        (
            DEPLOYMENT + "/commit-status",
            CommitStatusResource(config, store, SecretCipher.from_config(config)),
            None,
        ),
    ]


def create_app(config: Config | None = None) -> falcon.asgi.App:
    config = config or Config.from_env()
    require_strong_credentials(config, registry=False)
    use_json_logging(logging.INFO, SERVER_LOGGERS)
    redis = bounded_async_redis(config.redis_url, API_CONNECTIONS)
    s3 = create_s3(config)
    # The log followers' clients (api/logfanout.py): a connection per build followed live, and a
    # few that their replays share.
    live, replay = (
        async_redis(config.redis_url),
        bounded_async_redis(config.redis_url, LOG_REPLAY_CONNECTIONS),
    )
    fanout = LogFanout(
        LogReader(config, live, s3), LogReader(config, replay, s3), config.log_follower_buffer_bytes
    )
    broker = create_broker(config)
    store = RecordStore(redis)
    middleware = [
        MetricsMiddleware(),
        ConnectionsMiddleware(config, redis, s3, (live, replay)),
        AuthMiddleware(store),
    ]
    app = falcon.asgi.App(middleware=middleware)
    app.set_error_serializer(serialize_error)
    app.add_error_handler(falcon.HTTPError, refuse_handshake)
    for kind in UNAVAILABLE:
        app.add_error_handler(kind, unavailable)
    # Response bodies are the contract's Structs (common/contract.py), encoded by msgspec; request
    # bodies are read raw and fitted to their Struct by api/validation.py.
    app.resp_options.media_handlers[falcon.MEDIA_JSON] = falcon.media.JSONHandler(dumps=contract.encode)
    app.req_options.strip_url_path_trailing_slash = True
    for template, resource, suffix in routes(config, redis, s3, broker, store, fanout):
        app.add_route(template, resource, suffix=suffix)
    return app
