"""How a build's log sits in its Redis stream: one entry per line, numbered from 1.

Entry ids are `{line_number}-0`, so a reader resumes after line N by asking for ids above
`N-0`, and the id of every line survives a takeover by another worker. The last entry
carries the END field (the final status) instead of a line.

A line longer than BUILDFARM_LOG_MAX_LINE_BYTES reaches the stream in pieces of at most that
many bytes of its text; each piece after the first starts with CONTINUED, so a reader joins a
piece to the line before it by dropping the marker and the newline between them.
"""

from __future__ import annotations

LINE_FIELD = b"l"
END_FIELD = b"end"
CONTINUED = "[line continued] "

# What an entry costs Redis, measured with MEMORY USAGE on Redis 7.0 (streams of 2,000 to
# 100,000 equal entries, stream-node-max-bytes 4096): an empty line 16 bytes; lines of 10 to 300
# bytes their length plus 17 to 55; longer ones up to 1.46 times their length (2,100 bytes: two
# no longer share a 4 KiB node) and 1.26 times for a 64 KiB piece (the allocator's size classes).
# The rule below is at or above every one of those measurements, so a log within its cap by this
# count holds at most the cap in Redis memory.
LINE_OVERHEAD_BYTES = 32


def entry_cost(text_bytes: int) -> int:
    """The bytes of Redis memory the log cap counts for an entry of this many bytes of text."""
    return text_bytes + text_bytes // 2 + LINE_OVERHEAD_BYTES


def entry_id(line_number: int) -> str:
    return f"{line_number}-0"


def line_number(entry: bytes | str) -> int:
    text = entry.decode() if isinstance(entry, bytes) else entry
    return int(text.split("-", 1)[0])
