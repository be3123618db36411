"""One stop, one SIGTERM. A worker process is often sent SIGTERM twice for the same stop: by
whoever stops the whole process group (systemd's default `KillMode=control-group`, `kill --
-PGID`) and by Dramatiq's master, which forwards it to each of its processes. Dramatiq takes a
second SIGTERM as "kill now": the process exits in the middle of its shutdown, without giving
its prefetched messages back to the queue (they wait for Dramatiq's maintenance, a minute or
more, and no other worker runs them meanwhile) and without its builds' grace period. A SIGTERM
that comes within SAME_STOP_S of the first is taken as the same stop; a later one still kills."""

from __future__ import annotations

import signal
import threading
import time

SAME_STOP_S = 2.0


def take_repeated_stop_signals_as_one() -> None:
    """Wraps the process's SIGTERM handler (Dramatiq's, set before its workers boot). Only
    the main thread may set a handler: a worker started in another thread keeps its own."""
    dramatiqs = signal.getsignal(signal.SIGTERM)
    first: float | None = None

    def on_stop(signum, frame) -> None:
        nonlocal first
        now = time.monotonic()
        if first is None:
            first = now
        elif now - first < SAME_STOP_S:
            return
        dramatiqs(signum, frame)

    if callable(dramatiqs) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, on_stop)
