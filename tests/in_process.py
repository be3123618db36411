"""The API app in the test process, behind an httpx transport: contract tests (validation,
error bodies, paging) send the same httpx requests as to the server and get httpx responses,
without booting gunicorn.

The app comes from the server's own factory (api.app.create_app) and is driven by
falcon.testing's ASGIConductor. Its lifespan (Redis ping, buckets) runs once, and every
request runs on the same event loop as that startup: the app's redis.asyncio client is bound
to the loop it connected on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from falcon.testing import ASGIConductor

from api.app import create_app
from common.config import Config

# falcon.testing adds these itself, from the host and the body it is given: forwarding
# httpx's copies would give the app each header twice.
SET_BY_FALCON = frozenset({"host", "content-length", "transfer-encoding"})


class InProcessTransport(httpx.BaseTransport):
    """Hands each request of a sync httpx client to the app, on the app's event loop."""

    def __init__(self, conductor: ASGIConductor, runner: asyncio.Runner) -> None:
        self.conductor = conductor
        self.runner = runner

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        result = self.runner.run(
            self.conductor.simulate_request(
                request.method,
                # Still percent-encoded, with its query: falcon decodes it as a server does.
                request.url.raw_path.decode("ascii"),
                headers=[(k, v) for k, v in request.headers.multi_items() if k.lower() not in SET_BY_FALCON],
                body=request.read(),
                host=request.url.host,
                port=request.url.port,
            )
        )
        return httpx.Response(
            result.status_code, headers=list(result.headers.items()), content=result.content
        )


@contextmanager
def serve_in_process(config: Config) -> Iterator[InProcessTransport]:
    """The app started (lifespan startup) for the duration of the block, then shut down."""
    with asyncio.Runner() as runner:
        conductor = ASGIConductor(create_app(config))
        runner.run(conductor.__aenter__())
        try:
            yield InProcessTransport(conductor, runner)
        finally:
            runner.run(conductor.__aexit__(None, None, None))
