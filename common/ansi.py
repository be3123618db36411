"""Terminal escape sequences in a build's output, as GET …/logs?strip_ansi=1 removes them: the
ESC-introduced sequences of ECMA-48 (CSI colours and cursor moves, OSC titles and links, the
two-character escapes). The dashboard renders the colours instead (api/static/terminal.js)."""

from __future__ import annotations

import re

# CSI (ESC [ params intermediates final), OSC (ESC ] … BEL or ST), other ESC + one character;
# an ESC at the end of a line, with nothing after it, goes too.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~]|$)")


def strip_ansi(line: str) -> str:
    """The line without its escape sequences: the text a terminal would show, uncoloured."""
    return _ESCAPE.sub("", line) if "\x1b" in line else line
