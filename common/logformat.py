"""How a build's log sits in its Redis stream: one entry per line, numbered from 1.

Entry ids are `{line_number}-0`, so a reader resumes after line N by asking for ids above
`N-0`, and the id of every line survives a takeover by another worker. The last entry
carries the END field (the final status) instead of a line.
"""

from __future__ import annotations

LINE_FIELD = b"l"
END_FIELD = b"end"


def entry_id(line_number: int) -> str:
    return f"{line_number}-0"


def line_number(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-", 1)[0])
