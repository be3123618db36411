"""A unix-socket proxy in front of a Docker engine's socket that makes a restart look instant: a
connection made while the engine is down is held (not refused) until the engine accepts again,
so a ping sent right after the engine went away answers once it is back, as a ping to an engine
restarted in under a second does. A connection open when the engine goes away ends as the
engine's own would (its end, then a reset)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

from tests.netns import pipe

# How long a held connection waits for the engine before it is closed.
HOLD_S = 60.0


class HoldingProxy:
    def __init__(self, path: Path, upstream: Path) -> None:
        self.path, self.upstream = path, upstream
        self.socket = f"unix://{path}"
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(path))
        self._server.listen(128)
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), name="proxy-conn", daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = self._connect()
        if upstream is None:
            client.close()
            return
        back = threading.Thread(target=pipe, args=(upstream, client), daemon=True)
        back.start()
        pipe(client, upstream)
        back.join()
        client.close()
        upstream.close()

    def _connect(self) -> socket.socket | None:
        """The engine's socket, waited for while the engine is down (no socket, or refused)."""
        deadline = time.monotonic() + HOLD_S
        while time.monotonic() < deadline:
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(str(self.upstream))
                return upstream
            except (FileNotFoundError, ConnectionRefusedError):
                upstream.close()
                time.sleep(0.02)
        return None
