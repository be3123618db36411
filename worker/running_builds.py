"""The builds this worker process runs now (one per busy thread), which its heartbeat reports
to the farm: a change wakes the heartbeat, so that the farm sees a build in its slot at once."""

from __future__ import annotations

import threading


class RunningBuilds:
    def __init__(self) -> None:
        self._ids: list[str] = []
        self._lock = threading.Lock()
        self.changed = threading.Event()

    def add(self, build_id: str) -> None:
        with self._lock:
            self._ids.append(build_id)
        self.changed.set()

    def remove(self, build_id: str) -> None:
        with self._lock:
            self._ids.remove(build_id)
        self.changed.set()

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._ids)
