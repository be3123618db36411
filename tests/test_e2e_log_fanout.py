"""Log WebSockets by the hundred on the real API (gunicorn, two uvicorn workers) and a real build:
each API process reads a live log once for all its followers (api/logfanout.py), so Redis
connections stay flat however many follow, and a follower too slow for the live log is closed
with 1013 without holding the others back."""

from __future__ import annotations

import asyncio
import socket
import threading
from urllib.parse import urlsplit

from websockets.asyncio.client import connect as async_connect
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from common.redis_clients import API_CONNECTIONS, LOG_REPLAY_CONNECTIONS
from tests.conftest import start_api, wait_until
from tests.farm import (
    archive_deployment,
    context_archive,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
    ws_lines,
    ws_url,
)

FOLLOWERS = 300
# The Redis connections the API may open, whatever the number of followers: per process (2), its
# requests' connections, its log replays' and the build's live reader.
MAX_ADDED_REDIS_CLIENTS = 2 * (API_CONNECTIONS + LOG_REPLAY_CONNECTIONS + 1)


class PeakRedisClients:
    """The most Redis connections seen, sampled every 20 ms in a thread."""

    def __init__(self, redis_client) -> None:
        self.redis_client = redis_client
        self.before = len(redis_client.client_list())
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, len(self.redis_client.client_list()))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak - self.before


async def follow(url: str, token: str) -> tuple[list[str], int | None]:
    lines = []
    async with async_connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, open_timeout=60
    ) as ws:
        try:
            async for message in ws:
                lines.append(message)
        except ConnectionClosed:
            pass
        return lines, ws.close_code


async def followers(
    url: str, token: str, count: int, late_after_s: float
) -> list[tuple[list[str], int | None]]:
    """`count` followers, half from the start, half joining `late_after_s` later (mid-build)."""
    early = [asyncio.create_task(follow(url, token)) for _ in range(count // 2)]
    await asyncio.sleep(late_after_s)
    late = [asyncio.create_task(follow(url, token)) for _ in range(count - count // 2)]
    return await asyncio.gather(*early, *late)


def test_hundreds_of_followers_of_a_live_build_get_every_line_once_in_order_on_a_few_redis_connections(
    client, api_url, tenant_token, worker, redis_client
):
    # Given a build printing 150 numbered lines over about 5 s
    script = "for i in $(seq 1 150); do echo fan-$i; sleep 0.03; done"
    build = deploy(client, archive_deployment(client, context_archive(dockerfile(script))))
    wait_for_status(client, build, statuses=("building",))
    wait_until(lambda: "fan-1" in logs(client, build), 90, what="the first line")
    redis_clients = PeakRedisClients(redis_client)
    # When 300 WebSockets follow it, half of them joining 2 s later
    results = asyncio.run(followers(ws_url(api_url, build), tenant_token[1], FOLLOWERS, late_after_s=2))
    added = redis_clients.stop()
    # Then every follower got the whole log, each line once and in order, and was closed with 1000
    assert all(code == 1000 for _, code in results), {code for _, code in results}
    final = logs(client, build).splitlines()
    assert [line for line in final if line.startswith("fan-")] == [f"fan-{i}" for i in range(1, 151)]
    wrong = [i for i, (lines, _) in enumerate(results) if lines != final]
    assert not wrong, f"{len(wrong)} of {FOLLOWERS} followers got another log"
    # And the API's Redis connections did not grow with the followers
    print(f"\n{FOLLOWERS} followers added {added} Redis connections at the most")
    assert added <= MAX_ADDED_REDIS_CLIENTS


def stalling_reader(url: str, token: str, resume: threading.Event) -> tuple[list[str], int | None, str]:
    """A follower that reads one line, then nothing (through a 4 KiB receive window) until
    `resume` is set, then everything the server sent it, up to the close."""
    address = urlsplit(url)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect((address.hostname, address.port))
    headers = {"Authorization": f"Bearer {token}"}
    with connect(url, sock=sock, additional_headers=headers, max_queue=4) as ws:
        lines = [ws.recv(timeout=60)]
        resume.wait(120)
        try:
            while True:
                lines.append(ws.recv(timeout=30))
        except ConnectionClosed as closed:
            return lines, closed.rcvd.code, closed.rcvd.reason


def test_a_follower_too_slow_for_the_live_log_is_closed_with_1013_and_the_others_get_every_line(
    client, tenant_token, worker, logs_dir
):
    # Given an API whose followers may fall 64 KiB behind the live log
    server, url = start_api(
        logs_dir, name="api-small-follower-buffer", BUILDFARM_LOG_FOLLOWER_BUFFER_BYTES="65536"
    )
    try:
        # And a build printing 40,000 lines of 100 bytes in 8 s (more than the sockets between
        # the API and a client hold), under the 1 MiB/s that BuildKit forwards
        pad = "x" * 90
        script = f'for i in $(seq 1 40); do seq 1 1000 | sed "s/$/ $i {pad}/"; sleep 0.2; done'
        build = deploy(client, archive_deployment(client, context_archive(dockerfile("echo start", script))))
        wait_for_status(client, build, statuses=("building",))
        wait_until(lambda: "start" in logs(client, build), 90, what="the first step")
        token = tenant_token[1]
        # When a fast follower and one that stops reading follow it
        slow: dict = {}
        resume = threading.Event()

        def read_slowly() -> None:
            slow["lines"], slow["code"], slow["reason"] = stalling_reader(ws_url(url, build), token, resume)

        reader = threading.Thread(target=read_slowly)
        reader.start()
        fast, code = ws_lines(url, token, build)
        resume.set()
        reader.join(120)
        # Then the fast one gets the whole log and the end of the build
        final = logs(client, build).splitlines()
        assert code == 1000 and fast == final
        # And the slow one is closed with 1013 after an exact prefix of the log, the rest of
        # which it was not sent: the reason says where to resume
        assert slow["code"] == 1013, (slow["code"], len(slow["lines"]))
        received = len(slow["lines"])
        assert 0 < received < len(final) and slow["lines"] == final[:received]
        assert slow["reason"] == f"too slow for the live log: resume with ?after={received}"
        print(f"\nthe slow follower got {received} of {len(final)} lines before its 1013")
        # And resuming there gives it the rest, no gap, no duplicate
        rest, code = ws_lines(url, token, build, after=received)
        assert code == 1000 and slow["lines"] + rest == final
    finally:
        server.stop()
