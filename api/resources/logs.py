"""A build's log: GET as text/plain (`?strip_ansi=1`: without its terminal escapes), or a
WebSocket that replays it and then follows it live."""

from __future__ import annotations

import contextlib

import falcon
from falcon.asgi import WebSocket

from api.admission import LOG_STREAMS, TenantAdmission
from api.auth import WS_BEARER_SUBPROTOCOL, principal, subprotocol_token
from api.errors import not_found
from api.logfanout import LogFanout, TooSlow
from api.logreader import CHUNK, LogReader
from api.lookups import find_build
from api.store import RecordStore
from api.ws_frames import frame_sink
from common.ansi import strip_ansi
from common.models import Build, BuildStatus

# The WebSocket close code of a follower that fell too far behind the live log (RFC 6455 7.4.1).
TRY_AGAIN_LATER = 1013


class LogsResource:
    def __init__(
        self, store: RecordStore, reader: LogReader, admission: TenantAdmission, fanout: LogFanout
    ) -> None:
        self.store = store
        self.reader = reader
        self.admission = admission
        self.fanout = fanout

    async def on_get(
        self, req: falcon.Request, resp: falcon.Response, deployment_id: str, build_id: str
    ) -> None:
        build = await find_build(self.store, principal(req).tenant, deployment_id, build_id)
        plain = req.get_param_as_bool("strip_ansi", default=False)
        await self._require_logs(build)
        resp.content_type = falcon.MEDIA_TEXT
        if plain or build.log_state != "archived":
            # Line by line (the reader turns to the archive if there is one), so that no escape
            # sequence is cut between two chunks.
            resp.stream = self._text(build, plain)
        else:
            resp.stream = self.reader.archived_chunks(build)

    async def _require_logs(self, build: Build) -> None:
        """404 unless the build has a log to show: it is building, or it ran and left output."""
        if build.status == BuildStatus.PENDING or (
            build.status != BuildStatus.BUILDING and not await self.reader.has_output(build)
        ):
            raise not_found("Build logs not available")

    async def _text(self, build: Build, plain: bool):
        # Lines go out in chunks: one write per line took 20 s for half a million empty lines.
        chunk = bytearray()
        async for _, line in self.reader.lines(build):
            chunk += (strip_ansi(line) if plain else line).encode("utf-8", "replace") + b"\n"
            if len(chunk) >= CHUNK:
                yield bytes(chunk)
                chunk.clear()
        if chunk:
            yield bytes(chunk)

    async def on_websocket_stream(
        self, req: falcon.Request, ws: WebSocket, deployment_id: str, build_id: str
    ) -> None:
        """The log WebSocket, held against its tenant's log streams open (api/admission.py): past
        the limit the handshake is refused with 429 (api/ws_denial.py)."""
        async with self.admission.held(principal(req).tenant, LOG_STREAMS):
            await self._stream(req, ws, deployment_id, build_id)

    async def _stream(self, req: falcon.Request, ws: WebSocket, deployment_id: str, build_id: str) -> None:
        """One text message per line from line `after + 1` (default: the first), then live;
        closed with 1000 when the build ends. Resume with `?after=N`, N the lines seen. A client
        too slow for the live log is closed with 1013 (Try Again Later), the resume point in the
        reason."""
        build = await find_build(self.store, principal(req).tenant, deployment_id, build_id)
        after = req.get_param_as_int("after", min_value=0) or 0
        subprotocol = WS_BEARER_SUBPROTOCOL if subprotocol_token(req) else None
        await ws.accept(subprotocol=subprotocol)
        if BuildStatus(build.status).is_terminal:
            lines = self.reader.lines(build, after=after)
        else:
            # Where the server takes frames, the live lines go straight to the connection.
            lines = self.fanout.follow(build, after=after, sink=frame_sink(req.scope))
        try:
            # Closed at once when the client leaves: a follower leaves its build's live reader.
            async with contextlib.aclosing(lines):
                async for _, line in lines:
                    await ws.send_text(line)
        except TooSlow as e:
            await ws.close(TRY_AGAIN_LATER, str(e))
            return
        await ws.close(1000)
