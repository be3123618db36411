"""Writes a build's log lines to its Redis stream: batched, long lines cut into pieces, capped in
the memory the stream takes in Redis, fenced by the claim's attempt number, and closed with an
end marker."""

from __future__ import annotations

import threading
import time

import redis

from common.config import Config
from common.logformat import CONTINUED, END_FIELD, LINE_FIELD, entry_cost, entry_id, line_number
from common.records import builds as build_ops
from common.records import keys
from common.records.call import SyncRunner
from worker.log_lines import split_line

# Lines held in memory at most, in batches, before the build thread waits for Redis; and the
# bytes they hold at most (a batch of long lines is also one big call to Redis).
MAX_BUFFERED_BATCHES = 4
BATCH_BYTES = 1024 * 1024
# What a secret's value becomes in the log. Shorter values, and shorter lines of a multi-line
# value (a blank line, a `}`), are left alone: masking them would garble ordinary text.
MASK = "****"
MIN_MASKED = 4
# Room kept past the cap for the lines that say how the build ended.
FOOTER_RESERVE_BYTES = 64 * 1024


class LogWriter:
    """Collects lines from the build thread; a flusher thread ships them every interval."""

    def __init__(self, client: redis.Redis, build_id: str, attempt: int, config: Config) -> None:
        self.build_id = build_id
        self.attempt = attempt
        self.max_bytes = config.log_max_bytes
        self.max_line_bytes = config.log_max_line_bytes
        self.batch_lines = config.log_batch_lines
        self.flush_interval_s = config.log_flush_interval_s
        self._run = SyncRunner(client).run
        self._buffer: list[tuple[str, str]] = []
        self._buffered_bytes = 0
        self._cond = threading.Condition()
        self._closed = False
        self._truncated = False
        self.lost_claim = False
        self._secrets: list[str] = []
        # A takeover continues the numbering of the lines an earlier attempt wrote, and counts
        # what they take in Redis against the cap.
        stream = keys.build_log(build_id)
        last = client.xrevrange(stream, count=1)
        self.last_line = line_number(last[0][0]) if last else 0
        # What the log costs Redis so far (common/logformat.py entry_cost), in bytes.
        self.cost = client.memory_usage(stream, samples=0) if last else 0
        self._flusher = threading.Thread(target=self._flush_loop, name=f"log-{build_id[:8]}", daemon=True)
        self._flusher.start()

    def mask(self, secrets: list[str]) -> None:
        """Hides these values, and each of their lines, in every later line: a build's secrets
        never reach Redis, and so neither the WebSocket nor the archive."""
        parts = {
            part
            for value in secrets
            for part in (value, *value.splitlines())
            if len(part.strip()) >= MIN_MASKED
        }
        # Longest first: a value that contains another is hidden whole.
        self._secrets = sorted(parts, key=len, reverse=True)

    def masked(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def line(self, text: str, *, footer: bool = False, continued: bool = False) -> None:
        """Adds a line, in pieces if it is long; `continued`: it is a piece continuing the line
        before it (from a reader that cut the build's output itself, worker/log_lines.py)."""
        if self._truncated and not footer:
            return  # dropped anyway: spare masking and cutting a flood past the cap
        for index, piece in enumerate(split_line(self.masked(text), self.max_line_bytes)):
            self._add(CONTINUED + piece if continued or index else piece, footer)

    def _add(self, text: str, footer: bool) -> None:
        size = len(text.encode("utf-8", "replace"))
        with self._cond:
            limit = self.max_bytes + (FOOTER_RESERVE_BYTES if footer else 0)
            if self.cost + entry_cost(size) > limit:
                if self._truncated or footer:
                    return
                self._truncated = True
                text = (
                    f"[log truncated: it reached its cap of {self.max_bytes} bytes of Redis memory; "
                    "later lines are dropped]"
                )
                size = len(text)
            # Backpressure: a build printing faster than Redis takes lines waits here,
            # so the worker's memory stays bounded whatever the log's size.
            while self._full() and not self._closed:
                self._cond.wait()
            self.cost += entry_cost(size)
            self.last_line += 1
            self._buffer.append((entry_id(self.last_line), text))
            self._buffered_bytes += size
            if self._batch_ready():
                self._cond.notify_all()

    def _batch_ready(self) -> bool:
        return len(self._buffer) >= self.batch_lines or self._buffered_bytes >= BATCH_BYTES

    def _full(self) -> bool:
        return (
            len(self._buffer) >= self.batch_lines * MAX_BUFFERED_BATCHES
            or self._buffered_bytes >= BATCH_BYTES * MAX_BUFFERED_BATCHES
        )

    def drain(self) -> None:
        """Stops the flusher and ships every buffered line; no line may follow."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._flusher.join()
        self._send(self._take(), LINE_FIELD)

    def end(self, final_status: str) -> None:
        """Writes the end marker that live readers stop at (after `drain`)."""
        self._send([(entry_id(self.last_line + 1), final_status)], END_FIELD)

    def _take(self) -> list[tuple[str, str]]:
        with self._cond:
            batch, self._buffer, self._buffered_bytes = self._buffer, [], 0
            self._cond.notify_all()
        return batch

    def _flush_loop(self) -> None:
        while True:
            with self._cond:
                if not self._closed and not self._batch_ready():
                    self._cond.wait(self.flush_interval_s)
                closed = self._closed
            self._send(self._take(), LINE_FIELD)
            if closed:
                return

    def _send(self, entries: list[tuple[str, str]], field: bytes) -> None:
        if not entries or self.lost_claim:
            return
        append = build_ops.append_log(self.build_id, self.attempt, field, entries)
        for delay in (0.1, 0.5, 2.0, None):
            try:
                if not self._run(append):
                    self.lost_claim = True
                return
            except redis.ConnectionError:
                # A brief Redis outage must not lose lines: retry, then give up loudly.
                if delay is None:
                    raise
                time.sleep(delay)
