"""WebSocket handshakes go through the app a few at a time in each API process. A handshake
costs the app a few Redis round trips and some CPU (the tenant's stream slot, the token, the
build, the accept); a burst of them (a hundred followers connecting at once) would otherwise
all be served in the same turns of the event loop, and a request arriving meanwhile waits
behind the whole burst: GET build's p99 was 257-445 ms while 5,000 followers connected, 100 at
a time, against 21-41 ms with one or two handshakes in the app at once (bench/log_fanout.py,
host load 2.5-4.1); the 5,000 took 12-24 s, against 16-20 s without turns. A handshake holds
its turn only for Redis round trips, never for its client, so turns stay short."""

from __future__ import annotations

import asyncio
from typing import Any

# Handshakes in the app at once, per API process: the rest wait their turn, in order.
AT_ONCE = 2


class HandshakeTurns:
    """The ASGI app around the others: a WebSocket handshake takes a turn until the app answers
    it (accepts or refuses it) or ends."""

    def __init__(self, app: Any, at_once: int = AT_ONCE) -> None:
        self.app = app
        self.at_once = at_once
        self._turns: asyncio.Semaphore | None = None  # made in the server's event loop

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return await self.app(scope, receive, send)
        if self._turns is None:
            self._turns = asyncio.Semaphore(self.at_once)
        turns = self._turns
        await turns.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                turns.release()

        async def answer(message: dict) -> None:
            release()
            await send(message)

        try:
            await self.app(scope, receive, answer)
        finally:
            release()
