"""Cuts a build's output into the lines of its log: at each newline, and inside a line every
`max_bytes` bytes (never inside a character), so no line is ever held whole however long it
grows: memory stays within one piece and time linear in the output's length."""

from __future__ import annotations

from collections.abc import Callable

# Receives a line, or a piece of one, and whether it continues the piece before it.
Emit = Callable[[str, bool], None]
# A UTF-8 character is a lead byte and at most 3 continuation bytes (0b10xxxxxx).
_MAX_CONTINUATION_BYTES = 3


def _piece_end(data: bytes | bytearray, start: int, max_bytes: int) -> int:
    """Where the piece that starts at `start` ends: after at most `max_bytes` bytes, moved back
    to the start of a character it would cut (text that is not UTF-8 is cut where it falls)."""
    end = start + max_bytes
    if end >= len(data):
        return len(data)
    for _ in range(_MAX_CONTINUATION_BYTES):
        if data[end] & 0xC0 != 0x80:
            break
        end -= 1
    return end


def _decode(data: bytes | bytearray) -> str:
    return data.decode("utf-8", "replace")


def split_line(text: str, max_bytes: int) -> list[str]:
    """A whole line as its pieces of at most `max_bytes` bytes (itself when it is short)."""
    # A character is at most 4 bytes: a line this short needs no encoding to be known short.
    if len(text) * 4 <= max_bytes:
        return [text]
    data = text.encode("utf-8", "replace")
    pieces, start = [], 0
    while start < len(data) or not pieces:
        end = _piece_end(data, start, max_bytes)
        pieces.append(_decode(data[start:end]))
        start = end
    return pieces


class LineCutter:
    """Fed a stream's bytes in chunks of any size; emits its lines and the pieces of long ones."""

    def __init__(self, emit: Emit, max_bytes: int) -> None:
        self.emit = emit
        self.max_bytes = max_bytes
        self._tail = bytearray()
        # The tail continues a piece of its line already emitted.
        self._continued = False

    def feed(self, data: bytes) -> None:
        *ended, rest = data.split(b"\n")
        for part in ended:
            if self._tail or self._continued or len(part) > self.max_bytes:
                self._tail += part
                self._emit_pieces(line_ended=True)
            else:  # a whole short line: most of them
                self.emit(_decode(part), False)
        self._tail += rest
        self._emit_pieces(line_ended=False)

    def finish(self) -> None:
        """Emits a last line that no newline ended."""
        if self._tail or self._continued:
            self._emit_pieces(line_ended=True)

    def _emit_pieces(self, line_ended: bool) -> None:
        tail, start = self._tail, 0
        # Every full piece goes; the rest waits for more of its line, unless the line ended.
        while len(tail) - start > self.max_bytes:
            end = _piece_end(tail, start, self.max_bytes)
            self.emit(_decode(tail[start:end]), self._continued)
            self._continued, start = True, end
        if line_ended:
            # A line that ended exactly at a piece's end has nothing left to emit.
            if start < len(tail) or not self._continued:
                self.emit(_decode(tail[start:]), self._continued)
            self._continued, start = False, len(tail)
        del tail[:start]
