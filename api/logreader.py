"""Reads a build's log for the API: the live Redis stream while it exists, the archived
object afterwards, switching over without a gap or a duplicate line."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import redis.asyncio as aioredis
from minio import Minio
from minio.error import S3Error

from common.config import Config
from common.logformat import END_FIELD, LINE_FIELD, line_number
from common.models import Build, BuildStatus, LogState
from common.records import fields, keys
from common.s3 import log_key

PAGE = 1000
CHUNK = 64 * 1024
FOLLOW_BLOCK_MS = 1000


class LogReader:
    def __init__(self, config: Config, redis: aioredis.Redis, s3: Minio) -> None:
        self.config = config
        self.redis = redis
        self.s3 = s3

    async def has_output(self, build: Build) -> bool:
        """Whether any log exists to show: at least one live line, or an archive. Updates
        `build.log_state`, which the log archive may have changed since the build was read."""
        if build.log_state not in (LogState.ARCHIVED, LogState.EXPIRED):
            first = await self.redis.xrange(keys.build_log(build.id), count=1)
            if first and LINE_FIELD in first[0][1]:
                return True
            state = await self.redis.hget(keys.build(build.id), fields.LOG_STATE)
            build.log_state = state.decode() if state else None
        return build.log_state == LogState.ARCHIVED

    async def lines(
        self, build: Build, after: int = 0, follow: bool = False
    ) -> AsyncIterator[tuple[int, str]]:
        """(line number, text) from line `after + 1` on; with `follow`, until the build ends."""
        async for page in self.pages(build, after, follow):
            for numbered in page:
                yield numbered

    async def pages(
        self, build: Build, after: int = 0, follow: bool = False
    ) -> AsyncIterator[list[tuple[int, str]]]:
        """The lines of `lines`, in the pages Redis returned them in (up to PAGE lines each).

        Reads the live stream page by page; once caught up, it checks where the log is: in
        the archive (the stream was dropped), finished, or still growing — and only then
        blocks for new lines."""
        stream = keys.build_log(build.id)
        last, ended = after, False
        while True:
            entries = await self.redis.xrange(stream, min=f"{last + 1}-0", count=PAGE)
            if not entries:
                state, status = await self.redis.hmget(keys.build(build.id), fields.LOG_STATE, fields.STATUS)
                if state == LogState.ARCHIVED.value.encode():
                    page = []
                    async for number, line in self.archived_lines(build):
                        if number > last:
                            page.append((number, line))
                        if len(page) == PAGE:
                            yield page
                            page = []
                    if page:
                        yield page
                    return
                finished = status is None or BuildStatus(status.decode()).is_terminal
                if finished and not ended:
                    # A worker writes a build's last lines before it ends the build: they may
                    # have landed just after the read above, so read once more now.
                    ended = True
                    continue
                if not follow or finished:
                    return
                found = await self.redis.xread({stream: f"{last}-0"}, count=PAGE, block=FOLLOW_BLOCK_MS)
                entries = found[0][1] if found else []
            page = []
            for entry_id, entry in entries:
                if END_FIELD in entry:
                    break
                last = line_number(entry_id)
                page.append((last, entry[LINE_FIELD].decode("utf-8", "replace")))
            if page:
                yield page
            if len(page) < len(entries) or (not follow and len(entries) < PAGE):
                return

    async def last_line(self, build: Build) -> int:
        """The number of the last line in the live stream now (0: none yet)."""
        newest = await self.redis.xrevrange(keys.build_log(build.id), count=1)
        if not newest:
            return 0
        entry_id, entry = newest[0]
        return line_number(entry_id) - (END_FIELD in entry)

    async def archived_lines(self, build: Build) -> AsyncIterator[tuple[int, str]]:
        number, tail = 0, b""
        async for chunk in self.archived_chunks(build):
            *complete, tail = (tail + chunk).split(b"\n")
            for raw in complete:
                number += 1
                yield number, raw.decode("utf-8", "replace")
        if tail:
            yield number + 1, tail.decode("utf-8", "replace")

    async def archived_chunks(self, build: Build) -> AsyncIterator[bytes]:
        try:
            response = await asyncio.to_thread(
                self.s3.get_object, self.config.logs_bucket, log_key(build.deployment_id, build.id)
            )
        except S3Error as e:
            if e.code in ("NoSuchKey", "NoSuchBucket"):
                return
            raise
        try:
            while chunk := await asyncio.to_thread(response.read, CHUNK):
                yield chunk
        finally:
            response.close()
            response.release_conn()
