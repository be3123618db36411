"""WebSocket frames written straight to a connection, past ASGI's `websocket.send`: the log fan-out
(api/logfanout.py) encodes a line's frame once and writes the same bytes to each of its followers,
where a message per follower would encode the line once per follower and wake each follower's
task to send it. The server offers this as the ASGI extension EXTENSION (api/server.py); without
it, frame_sink gives None and the app sends messages as usual."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

EXTENSION = "buildfarm.websocket.frames"
# RFC 6455 5.2: FIN and the text opcode; a server's frames are not masked.
FIN_TEXT = 0x81


@dataclass(frozen=True)
class FrameSink:
    """One accepted WebSocket's connection, as the server offers it."""

    # Bytes written and not yet taken by the peer; None once the connection closes or is closing:
    # nothing more may be written then.
    buffered: Callable[[], int | None]
    # Writes whole frames, after everything the app sent before.
    write: Callable[[bytes], None]


def frame_sink(scope: dict) -> FrameSink | None:
    offered = scope.get("extensions", {}).get(EXTENSION)
    return FrameSink(offered["buffered"], offered["write"]) if offered else None


def text_frame(text: str) -> bytes:
    """`text` as one unfragmented text frame, as a server sends it."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        header = struct.pack("!BB", FIN_TEXT, size)
    elif size < 1 << 16:
        header = struct.pack("!BBH", FIN_TEXT, 126, size)
    else:
        header = struct.pack("!BBQ", FIN_TEXT, 127, size)
    return header + payload
