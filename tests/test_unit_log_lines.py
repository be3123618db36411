"""Cutting a build's output into log lines (worker/log_lines.py): at newlines, and long lines
into pieces of at most the limit's bytes, never inside a character."""

from __future__ import annotations

import time

from worker.log_lines import LineCutter, split_line


def cut(chunks: list[bytes], max_bytes: int) -> list[tuple[str, bool]]:
    emitted: list[tuple[str, bool]] = []
    cutter = LineCutter(lambda text, continued: emitted.append((text, continued)), max_bytes)
    for chunk in chunks:
        cutter.feed(chunk)
    cutter.finish()
    return emitted


def test_lines_split_across_chunks_come_out_whole_and_empty_lines_are_kept():
    assert cut([b"one\ntw", b"o\n\nthr", b"ee"], 64) == [
        ("one", False),
        ("two", False),
        ("", False),
        ("three", False),
    ]


def test_a_line_past_the_limit_comes_in_pieces_of_the_limit_each_marked_as_continuing():
    # Given a line of 150 bytes fed in chunks of 7 bytes, and a limit of 64
    line = bytes(range(48, 48 + 75)) * 2
    chunks = [line[i : i + 7] for i in range(0, len(line), 7)] + [b"\nnext\n"]
    # Then it comes out as 64 + 64 + 22 bytes, the last two continuing the first
    assert cut(chunks, 64) == [
        (line[:64].decode(), False),
        (line[64:128].decode(), True),
        (line[128:].decode(), True),
        ("next", False),
    ]


def test_a_line_of_exactly_the_limit_is_one_piece_and_the_next_line_starts_afresh():
    assert cut([b"x" * 64 + b"\ny"], 64) == [("x" * 64, False), ("y", False)]
    assert cut([b"x" * 128], 64) == [("x" * 64, False), ("x" * 64, True)]


def test_a_piece_never_ends_inside_a_character():
    # Given characters of 2, 3 and 4 bytes that straddle every possible cut
    for character in ("é", "€", "🙂"):
        text = "a" + character * 40
        pieces = [piece for piece, _ in cut([text.encode()], 64)]
        assert "".join(pieces) == text
        assert all(len(piece.encode()) <= 64 for piece in pieces)
        assert split_line(text, 64) == pieces


def test_bytes_that_are_not_utf8_are_cut_near_the_limit_and_replaced():
    pieces = cut([b"\x80" * 100], 64)
    assert [len(piece) for piece, _ in pieces] == [61, 39]
    assert set(pieces[0][0]) == {"\ufffd"}


def test_split_line_leaves_a_short_line_as_it_is_and_an_empty_one_as_one_line():
    assert split_line("short", 64) == ["short"]
    assert split_line("", 64) == [""]
    assert split_line("y" * 65, 64) == ["y" * 64, "y"]


def test_the_time_to_cut_a_line_grows_linearly_with_its_length():
    # A line kept whole while it grows costs time quadratic in its length (16 MiB took 2.6 s,
    # 32 MiB 9.8 s in the worker before): 8 times longer here must take about 8 times as long,
    # not 64 (a wide margin for a shared machine).
    def seconds(megabytes: int) -> float:
        chunk = b"x" * 32768
        started = time.perf_counter()
        pieces: list[bool] = []
        cutter = LineCutter(lambda text, continued: pieces.append(continued), 65536)
        for _ in range(megabytes * 32):
            cutter.feed(chunk)
        cutter.finish()
        assert len(pieces) == megabytes * 16 and pieces.count(False) == 1
        return time.perf_counter() - started

    small, large = min(seconds(16) for _ in range(3)), min(seconds(128) for _ in range(3))
    assert large < small * 8 * 3, f"16 MiB: {small:.3f} s, 128 MiB: {large:.3f} s"
