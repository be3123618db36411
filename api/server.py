"""The gunicorn worker class that serves the API: uvicorn, with a cap on request heads, no
per-message compression of WebSocket log lines, and WebSocket connections that take frames the
app encoded itself (api/ws_frames.py).

uvicorn's httptools parser accepts request headers of any size (20 MB was seen to pass), so
a header flood could fill memory; h11 refuses a head over the cap before reading more.

It also gives each server run its metrics directory (api/metrics.py, common/metrics_dir.py),
and makes gunicorn's own log lines JSON, like the app's and the workers'.

    gunicorn api.asgi:app --worker-class api.server.ApiWorker
"""

from __future__ import annotations

import atexit
import os
import shutil
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker

from api.ws_frames import EXTENSION
from common import metrics_dir
from common.logging_json import SERVER_LOGGERS, use_json_logging

MAX_REQUEST_HEAD_BYTES = 64 * 1024


def _metrics_run_dir() -> None:
    """Prometheus's multiprocess directory of this server run. gunicorn imports this module in
    its master, before it forks the workers and before it loads the app (even with --preload),
    so the workers inherit the directory through the environment and count into it; the master
    removes it when it exits."""
    path = metrics_dir.use_fresh_run_dir("api")
    master = os.getpid()

    def remove() -> None:
        if os.getpid() == master:  # workers inherit this exit handler too
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)


_metrics_run_dir()
# gunicorn has set up its loggers by the time it imports the worker class (in the master,
# before the workers fork): they inherit the JSON handlers.
use_json_logging(servers=SERVER_LOGGERS)


class FramesWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol, offering each connection's app the ws_frames EXTENSION."""

    def handle_connect(self, event: Any) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none for a handshake refused at once
        if scope is not None:
            scope["extensions"][EXTENSION] = {"buffered": self._buffered, "write": self.transport.write}

    def _buffered(self) -> int | None:
        if not self.handshake_complete or self.close_sent or self.transport.is_closing():
            return None
        return self.transport.get_write_buffer_size()


class ApiWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "auto",
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
        # Log lines are short: compressing each message costs more CPU than it saves bytes.
        "ws_per_message_deflate": False,
        "ws": FramesWebSocketProtocol,
    }
