"""The escape sequences GET …/logs?strip_ansi=1 removes from a log line, and what it keeps."""

import pytest

from common.ansi import strip_ansi


@pytest.mark.parametrize(
    ("line", "plain"),
    [
        ("\x1b[91mE: package not found", "E: package not found"),
        ("\x1b[0mRemoving intermediate container", "Removing intermediate container"),
        ("\x1b[1;32mok\x1b[m done", "ok done"),
        ("\x1b[38;5;208morange\x1b[38;2;255;0;0m red", "orange red"),
        ("\x1b[2K\x1b[1Gprogress", "progress"),
        ("\x1b]0;window title\x07text", "text"),
        ("\x1b]8;;https://example.com\x1b\\link\x1b]8;;\x1b\\", "link"),
        ("\x1b(Bcharset", "charset"),
        ("cut at the end\x1b", "cut at the end"),
    ],
)
def test_escape_sequences_are_removed(line, plain):
    assert strip_ansi(line) == plain


@pytest.mark.parametrize("line", ["plain text", "tab\tand [brackets] [32m", "10%\r50%\r100%", ""])
def test_a_line_without_escapes_is_kept_as_it_is(line):
    assert strip_ansi(line) == line
