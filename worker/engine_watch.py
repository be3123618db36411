"""Tells an engine that went away during a build from a build that failed, even when the engine
is already back when the build's error is read (a restart in under a second answers a ping).

One thread per worker process holds the engine's event stream open (`GET /events`, only the
rare `daemon` events, so nothing flows on it): an engine that stops or restarts closes it. The
thread counts the times it broke (the engine's generation) and opens it again. A build marks the
generation at its start (`EngineWatch.mark`); a builder's failure is the engine's when the
generation moved since, when the stream is broken now, or when the engine does not answer a ping.
Its cost is one thread and one idle connection per process; a build reads two attributes.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading

import docker

from worker.docker_build import engine_answers

logger = logging.getLogger("buildfarm.worker")

# How long the watcher waits before it opens the stream again after it broke (or failed to open).
REOPEN_S = 0.5


class EngineWatch(threading.Thread):
    def __init__(self, docker_host: str) -> None:
        super().__init__(name="engine-watch", daemon=True)
        self.docker_host = docker_host
        # Times the open stream broke; and whether it is open now.
        self.generation = 0
        self.connected = False
        self._socket: socket.socket | None = None
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                with docker.APIClient(base_url=self.docker_host, version="auto", timeout=None) as client:
                    events = client.events(filters={"type": ["daemon"]}, decode=True)
                    self._socket = _socket_of(events)
                    self.connected = True
                    for _ in events:
                        pass
            except Exception as e:  # an engine that does not answer: opened again below
                logger.debug("engine event stream not open: %s", e)
            finally:
                if self.connected:
                    self.generation += 1
                    logger.warning("the Docker engine's event stream broke (generation %s)", self.generation)
                self.connected, self._socket = False, None
            self._stopping.wait(REOPEN_S)

    def stop(self) -> None:
        self._stopping.set()

    def broken(self) -> bool:
        """Whether the stream is not open now, or its end is waiting to be read."""
        sock = self._socket
        if not self.connected or sock is None:
            return True
        try:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except BlockingIOError:
            return False  # open, nothing to read
        except OSError:
            return True


class EngineMark:
    """The engine as a build starts (its generation): what tells later whether it went away
    meanwhile. Without a watch (a pipeline run outside a worker's boot), the ping alone tells."""

    def __init__(self, watch: EngineWatch | None, docker_host: str) -> None:
        self.watch, self.docker_host = watch, docker_host
        self.generation = watch.generation if watch else 0

    def moved(self) -> bool:
        """Whether the watched stream broke since the mark, or is broken now (False unwatched)."""
        watch = self.watch
        if watch is None or not watch.is_alive():
            return False
        return watch.generation != self.generation or watch.broken()

    def gone(self) -> bool:
        """Whether the engine went away since the mark. The ping also gives the watcher time to
        see an engine that closed both the build's connection and its stream at once."""
        return self.moved() or not engine_answers(self.docker_host) or self.moved()


def _socket_of(events) -> socket.socket | None:
    """The socket under docker-py's event stream (as CancellableStream.close finds it)."""
    with contextlib.suppress(AttributeError):
        fp = events._response.raw._fp.fp
        return fp.raw._sock
    return None
