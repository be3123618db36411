"""The gunicorn worker class that serves the API: uvicorn with its httptools parser, a cap on
request heads, responses written in one write, no per-message compression of WebSocket log
lines, and WebSocket connections that take frames the app encoded itself (api/ws_frames.py).

httptools buffers a request head of any size (a 20 MB header was seen to pass), so a header
flood could fill memory: the bytes that arrive while a head is read are counted here, and a
head over the cap is answered 400 and the connection closed. (uvicorn's h11 parser has a cap
of its own, but parses in Python: it cost the API about a third of its throughput.)

It also gives each server run its metrics directory (api/metrics.py, common/metrics_dir.py),
and makes gunicorn's own log lines JSON, like the app's and the workers'.

    gunicorn api.asgi:app --worker-class api.server.ApiWorker
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
from typing import Any

import falcon
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker

from api.errors import error_body
from api.ws_frames import EXTENSION
from common import metrics_dir
from common.logging_json import SERVER_LOGGERS, use_json_logging

MAX_REQUEST_HEAD_BYTES = 64 * 1024
END_OF_HEAD = b"\r\n\r\n"


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


class OneWriteResponse:
    """The transport a response is written to, holding the response's head back until its body
    (or the end of the event loop's turn, for a response without one): uvicorn writes the two
    apart, and a system call is a large part of a small request's cost here."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._head: bytes | None = None
        self._release: asyncio.Handle | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:
            self._started, self._head = True, data
            self._release = asyncio.get_running_loop().call_soon(self._write_head)
            return
        if self._head is not None:
            self._release.cancel()
            data, self._head = self._head + data, None
        self._transport.write(data)

    def _write_head(self) -> None:
        if self._head is not None:
            self._transport.write(self._head)
            self._head = None

    def close(self) -> None:
        self._write_head()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class ApiHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, writing each response in one write (OneWriteResponse) and
    refusing a request whose head passes MAX_REQUEST_HEAD_BYTES before httptools has read it.
    A head is counted from the end of the previous request (or the connection's start) to the
    blank line that ends it; bytes of a body are never counted, even those that arrive with
    the head."""

    _in_head = True
    _head_bytes = 0
    # The last bytes of the head read so far: its end may straddle two reads.
    _tail = b""

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_bytes += self._head_part(data)
            if self._head_bytes > MAX_REQUEST_HEAD_BYTES:
                self._refuse_head()
                return
            self._tail = (self._tail + data[-3:])[-3:]
        super().data_received(data)

    def _head_part(self, data: bytes) -> int:
        """How many bytes of `data` are the head being read: all of them, or up to its end."""
        across = (self._tail + data[:3]).find(END_OF_HEAD)
        if across >= 0:
            return across + len(END_OF_HEAD) - len(self._tail)
        at = data.find(END_OF_HEAD)
        return len(data) if at < 0 else at + len(END_OF_HEAD)

    def on_headers_complete(self) -> None:
        self._in_head, self._head_bytes, self._tail = False, 0, b""
        before = self.cycle
        super().on_headers_complete()
        if self.cycle is not before:  # a request to answer (not a WebSocket upgrade)
            self.cycle.transport = OneWriteResponse(self.transport)

    def on_message_complete(self) -> None:
        self._in_head = True
        super().on_message_complete()

    def _refuse_head(self) -> None:
        self.logger.warning("Request head over %d bytes refused", MAX_REQUEST_HEAD_BYTES)
        body = error_body(
            falcon.HTTPBadRequest(description=f"Request head over {MAX_REQUEST_HEAD_BYTES // 1024} KiB")
        )
        head = (
            b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        )
        self.transport.write(head + body)
        self.transport.close()


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
        "http": ApiHttpProtocol,
        # Log lines are short: compressing each message costs more CPU than it saves bytes.
        "ws_per_message_deflate": False,
        "ws": FramesWebSocketProtocol,
    }
