"""The parts of the farm this worker process did not reach past their bound (the registry, S3,
its engine): while one is down the worker claims no build, and leaves its queue tickets to the
other workers, rather than taking each new build only to wait out the bound again.

A part down is asked again at most every RECHECK_S, by a cheap probe from the worker's host (any
HTTP answer of the registry or S3, the engine's ping): the worker claims again once it answers,
or once the part's bound has passed again, so that a farm without another worker still ends its
builds (each then tries the part, and fails once its attempts are spent)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests

from common.config import Config
from worker import metrics
from worker.build_types import ENGINE, REGISTRY, S3
from worker.docker_build import engine_answers
from worker.infra_retry import duration

logger = logging.getLogger("buildfarm.worker")

# How often a part down is asked whether it answers again.
RECHECK_S = 5.0
# How long a probe waits for the part's answer.
PROBE_S = 2.0


@dataclass
class _Down:
    until: float
    next_check: float


class PartsDown:
    def __init__(self, config: Config) -> None:
        scheme = "https" if config.s3_secure else "http"
        self._probes: dict[str, Callable[[], bool]] = {
            REGISTRY: lambda: _answers(f"http://{config.registry}/v2/"),
            S3: lambda: _answers(f"{scheme}://{config.s3_endpoint}/"),
            ENGINE: lambda: engine_answers(config.docker_host),
        }
        self._down: dict[str, _Down] = {}
        self._lock = threading.Lock()

    def mark(self, part: str, bound_s: float) -> None:
        """`part` did not answer this worker within `bound_s`: no claim until it answers again
        (or for `bound_s` at most)."""
        now = time.monotonic()
        with self._lock:
            self._down[part] = _Down(until=now + bound_s, next_check=now + RECHECK_S)
        metrics.part_down(part, True)
        logger.warning(
            "%s did not answer this worker for %s: it claims no build, leaving them to the other workers, "
            "until it answers again (asked every %g s), for %s at most",
            part,
            duration(bound_s),
            RECHECK_S,
            duration(bound_s),
        )

    def idle_reason(self) -> str | None:
        """Why this worker claims no build now (a part down), or None."""
        with self._lock:
            for part, down in list(self._down.items()):
                now = time.monotonic()
                if now >= down.until:
                    self._back(part, "its bound passed: this worker tries it again with the next build")
                elif now >= down.next_check and self._probes[part]():
                    self._back(part, "it answers again")
                else:
                    if now >= down.next_check:
                        down.next_check = now + RECHECK_S
                        logger.warning(
                            "%s still does not answer this worker: it claims no build (%s left)",
                            part,
                            duration(round(down.until - now)),
                        )
                    return f"{part} does not answer this worker"
        return None

    def _back(self, part: str, why: str) -> None:
        del self._down[part]
        metrics.part_down(part, False)
        logger.warning("%s: %s; this worker claims builds again", part, why)


def _answers(url: str) -> bool:
    """Whether an HTTP server answers at `url`, whatever its status (a registry wants a login)."""
    try:
        requests.get(url, timeout=PROBE_S, allow_redirects=False).close()
    except requests.RequestException:
        return False
    return True
