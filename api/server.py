"""The gunicorn worker class that serves the API: uvicorn, with a cap on request heads and
no per-message compression of WebSocket log lines.

uvicorn's httptools parser accepts request headers of any size (20 MB was seen to pass), so
a header flood could fill memory; h11 refuses a head over the cap before reading more.

    gunicorn api.asgi:app --worker-class api.server.ApiWorker
"""

from __future__ import annotations

from typing import Any

from uvicorn_worker import UvicornWorker

MAX_REQUEST_HEAD_BYTES = 64 * 1024


class ApiWorker(UvicornWorker):
    CONFIG_KWARGS: dict[str, Any] = {
        "loop": "auto",
        "http": "h11",
        "h11_max_incomplete_event_size": MAX_REQUEST_HEAD_BYTES,
        # Log lines are short: compressing each message costs more CPU than it saves bytes.
        "ws_per_message_deflate": False,
    }
