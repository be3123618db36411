"""Live logs fanned out in this API process: one reader per followed build, whatever the number
of its followers, so Redis connections grow with the builds followed, not with the followers.

A follower first replays what exists from Redis (the replay reader's few connections, shared by
every follower), then joins the live reader's fan-out at the line it reached: it joins only once
the reader has sent nothing it lacks, so no line is lost, and it skips any line it already has,
so none is repeated. Each follower queues at most `log_follower_buffer_bytes` of lines (the
pages are shared between followers); one that falls further behind is dropped from the fan-out
(`TooSlow`) rather than stall the others or hold memory without bound.

A follower on a connection that takes frames (api/ws_frames.py: the API's server offers it) has
no queue: the reader encodes each page's frames once and writes them to every such follower's
connection itself, what the connection has not sent yet counting against the follower's buffer.
A line then costs a follower one write, not a message and a task switch of its own."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from api.logreader import LogReader
from api.ws_frames import FrameSink, text_frame
from common.models import Build

# What a queued line counts against a follower's buffer beyond its text: the page's references.
LINE_OVERHEAD_BYTES = 64
# Followers served (a page queued or written) or woken per event loop iteration: a request
# waits behind at most this many.
SERVE_SLICE = 16

Page = list[tuple[int, str]]


class TooSlow(Exception):
    """Raised to a follower that fell further behind its build's live log than its buffer holds."""

    def __init__(self, last: int) -> None:
        super().__init__(f"too slow for the live log: resume with ?after={last}")
        self.last = last


class _Follower:
    """One follower's queue of pages, bounded by what its lines count; or, with a sink, its
    connection, bounded by what it has not sent."""

    def __init__(self, limit: int, sink: FrameSink | None) -> None:
        self.limit = limit
        self.sink = sink
        self.pages: deque[tuple[Page, int]] = deque()
        self.queued = 0
        self.last = 0  # the last line it was given
        self.live = False  # False while it replays from Redis: the fan-out skips it
        self.too_slow = False
        self.ended = False
        self.wake = asyncio.Event()

    def _end(self, too_slow: bool) -> bool:
        self.too_slow = too_slow
        self.ended = True
        self.wake.set()
        return False

    def push(self, page: Page, cost: int) -> bool:
        """Queues a page; False, and the queue emptied, if it would pass the limit. A follower with
        nothing queued always takes one page, however long its lines."""
        if self.queued and self.queued + cost > self.limit:
            self.too_slow = True
            self.pages.clear()
            self.wake.set()
            return False
        self.pages.append((page, cost))
        self.queued += cost
        self.wake.set()
        return True

    def write(self, page: Page, frames: list[bytes], whole: bytes) -> bool:
        """Writes the page's frames of the lines it lacks to its sink; False, and the follower
        ended, if the connection closed or would hold more than the limit unsent. A connection
        with nothing unsent always takes a page."""
        buffered = self.sink.buffered()
        if buffered is None:
            return self._end(too_slow=False)
        if page[0][0] <= self.last:  # it joined within this page
            whole = b"".join(frame for (n, _), frame in zip(page, frames, strict=True) if n > self.last)
        if buffered and buffered + len(whole) > self.limit:
            return self._end(too_slow=True)
        self.sink.write(whole)
        self.last = page[-1][0]
        return True

    async def next_page(self) -> Page:
        """The next page; empty once the follower is too slow or the live log has ended (always
        empty with a sink: the fan-out writes its pages)."""
        while not self.pages and not self.too_slow and not self.ended:
            self.wake.clear()
            await self.wake.wait()
        if self.too_slow or not self.pages:
            return []
        page, cost = self.pages.popleft()
        self.queued -= cost
        return page


class _LiveLog:
    """The one reader of a build's live log in this process, and the followers it feeds."""

    def __init__(self, reader: LogReader, build: Build, on_stop) -> None:
        self.reader = reader
        self.build = build
        self.followers: set[_Follower] = set()
        self.last = 0  # the last line fanned out
        self.started = asyncio.Event()
        self.done = False
        self.error: BaseException | None = None
        self._on_stop = on_stop
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        try:
            self.last = await self.reader.last_line(self.build)
            self.started.set()
            async for page in self.reader.pages(self.build, after=self.last, follow=True):
                self.last = page[-1][0]
                cost = sum(len(line) for _, line in page) + LINE_OVERHEAD_BYTES * len(page)
                frames: list[bytes] = []
                whole = b""
                for i, follower in enumerate([f for f in self.followers if f.live], start=1):
                    if follower.sink is None:
                        served = follower.push(page, cost)
                    else:
                        if not frames:  # encoded once for all its followers
                            frames = [text_frame(line) for _, line in page]
                            whole = b"".join(frames)
                        served = follower.write(page, frames, whole)
                    if not served:
                        self.followers.discard(follower)
                    if i % SERVE_SLICE == 0:
                        # Let the loop serve its other clients between slices of the followers
                        # (their sends run in the same loop iteration otherwise).
                        await asyncio.sleep(0)
        except Exception as e:  # every follower sees the reader's failure as its own
            self.error = e
        finally:
            self.done = True
            self.started.set()
            self._on_stop(self)
            for i, follower in enumerate(list(self.followers), start=1):
                follower.ended = True
                follower.wake.set()
                if i % SERVE_SLICE == 0:
                    # Each woken follower closes its WebSocket: not all in one loop iteration.
                    await asyncio.sleep(0)

    def leave(self, follower: _Follower) -> None:
        self.followers.discard(follower)
        if not self.followers and not self.done:
            # Out of the process's live logs at once: a new follower starts a new reader.
            self._on_stop(self)
            self.task.cancel()


class LogFanout:
    """The live readers of this API process, one per followed build."""

    def __init__(self, reader: LogReader, replay: LogReader, follower_buffer_bytes: int) -> None:
        self.reader = reader
        self.replay = replay
        self.follower_buffer_bytes = follower_buffer_bytes
        self.live: dict[str, _LiveLog] = {}

    def _stopped(self, live: _LiveLog) -> None:
        if self.live.get(live.build.id) is live:
            del self.live[live.build.id]

    async def follow(
        self, build: Build, after: int = 0, sink: FrameSink | None = None
    ) -> AsyncIterator[tuple[int, str]]:
        """(line number, text) from line `after + 1` until the build ends, as `LogReader.lines`
        with `follow`; raises TooSlow to a follower that falls too far behind. With a sink, it
        yields only the lines replayed: the live ones are written to the sink."""
        live = self.live.get(build.id)
        if live is None:
            live = self.live[build.id] = _LiveLog(self.reader, build, self._stopped)
        follower = _Follower(self.follower_buffer_bytes, sink)
        live.followers.add(follower)
        last = after
        try:
            await live.started.wait()
            # Replay until the live reader has fanned out nothing this follower lacks.
            while True:
                async for page in self.replay.pages(build, after=last):
                    for last, line in page:  # noqa: B007 (`last` is where the replay got to)
                        yield last, line
                if live.error is not None:
                    raise live.error
                if live.last <= last:
                    if live.done:
                        return
                    follower.last, follower.live = last, True
                    break
            while page := await follower.next_page():
                for number, line in page:
                    if number > follower.last:
                        follower.last = number
                        yield number, line
            if follower.too_slow:
                raise TooSlow(follower.last)
            if live.error is not None:
                raise live.error
        finally:
            live.leave(follower)
