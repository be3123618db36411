"""The text frames the log fan-out writes straight to a follower's connection (api/ws_frames.py),
read back by the websockets library's own frame parser, as a client reads them."""

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from api.ws_frames import text_frame


def read_frames(data: bytes, count: int) -> list[Frame]:
    """`count` frames parsed from `data`, which must hold exactly them."""
    reader = StreamReader()
    reader.feed_data(data)
    frames = []
    for _ in range(count):
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as parsed:
            next(parser)
        frames.append(parsed.value.value)
    assert not reader.buffer, "bytes left over"
    return frames


@pytest.mark.parametrize(
    "text",
    # Each length form of RFC 6455 5.2: 7 bits, 16 bits (126 and up), 64 bits (65,536 and up: a
    # log line's longest piece, log_max_line_bytes), and text longer in bytes than in characters.
    ["", "fan-1", "x" * 125, "x" * 126, "x" * 65_535, "x" * 65_536, "é" * 40_000 + " ✓"],
)
def test_a_line_is_one_final_unmasked_text_frame_a_client_reads_back_whole(text):
    # Given a line encoded as a frame, between two others (frames of a page are written together)
    data = text_frame("before") + text_frame(text) + text_frame("after")
    # When a client parses what it receives
    frames = read_frames(data, 3)
    # Then it reads three final text frames, the line's text intact in the middle one
    assert [(f.opcode, f.fin) for f in frames] == [(Opcode.TEXT, True)] * 3
    assert [f.data.decode() for f in frames] == ["before", text, "after"]
