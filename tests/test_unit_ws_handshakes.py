"""WebSocket handshakes take turns through the app (api/ws_handshakes.py): a few at a time, each
only until the app answers it, whatever way the app answers or ends; other requests never wait."""

import asyncio

import pytest

from api.ws_handshakes import AT_ONCE, HandshakeTurns


class App:
    """An ASGI app that answers each WebSocket handshake after `answer_after` seconds (accept,
    refuse, or raise), then keeps an accepted connection `then` seconds more; it counts the
    handshakes it holds at once."""

    def __init__(self, answer_after: float = 0.01, then: float = 0.0, how: str = "accept") -> None:
        self.answer_after, self.then, self.how = answer_after, then, how
        self.inside = self.most_inside = 0
        self.answered: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.answered.append("http")
            return
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        await asyncio.sleep(self.answer_after)
        self.inside -= 1
        if self.how == "raise":
            raise RuntimeError("the app failed")
        await send({"type": "websocket.accept" if self.how == "accept" else "websocket.close"})
        self.answered.append(scope["path"])
        await asyncio.sleep(self.then)


async def handshakes(turns: HandshakeTurns, count: int) -> list:
    async def one(i: int):
        await turns({"type": "websocket", "path": f"/{i}"}, None, noop)

    return await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


async def noop(message: dict) -> None:
    pass


def test_at_most_a_few_handshakes_are_in_the_app_at_once_and_every_one_is_answered():
    app = App()
    asyncio.run(handshakes(HandshakeTurns(app), 20))
    assert app.most_inside == AT_ONCE < 20
    assert sorted(app.answered) == sorted(f"/{i}" for i in range(20))


@pytest.mark.parametrize("how", ["refuse", "raise"])
def test_a_refused_handshake_or_an_app_that_raises_gives_its_turn_back(how):
    app = App(how=how)
    results = asyncio.run(asyncio.wait_for(handshakes(HandshakeTurns(app, at_once=1), 5), 5))
    assert len(results) == 5
    if how == "raise":
        assert all(isinstance(result, RuntimeError) for result in results)
    else:
        assert sorted(app.answered) == [f"/{i}" for i in range(5)]


def test_an_accepted_websocket_does_not_hold_a_turn_while_it_streams():
    # Five connections that stream 2 s each after their handshake, one turn: the handshakes
    # are all answered long before the first connection ends.
    app = App(then=2.0)

    async def run() -> float:
        turns = HandshakeTurns(app, at_once=1)
        started = asyncio.get_running_loop().time()
        tasks = [asyncio.ensure_future(handshakes(turns, 5))]
        while len(app.answered) < 5:
            await asyncio.sleep(0.005)
        answered_after = asyncio.get_running_loop().time() - started
        await tasks[0]
        return answered_after

    assert asyncio.run(run()) < 1.0


def test_other_requests_never_wait_for_a_turn():
    app = App(answer_after=1.0)

    async def run() -> list:
        turns = HandshakeTurns(app, at_once=1)
        waiting = asyncio.ensure_future(handshakes(turns, 2))
        await asyncio.sleep(0.05)
        await asyncio.wait_for(turns({"type": "http", "path": "/"}, None, noop), 0.5)
        answered = list(app.answered)
        await waiting
        return answered

    assert asyncio.run(run()) == ["http"]
