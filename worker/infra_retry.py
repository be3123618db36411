"""Retries a step that a fault of the farm's own infrastructure (the registry, S3) failed, within
a bound: each retry writes a line of the build's log saying what is retried and why, and past the
bound the build is handed back to a worker that may reach the part (worker/pipeline.py), or fails
once its attempts are spent, with the part and the outcome in words. A user's mistake is never retried:
`fault` names only the farm's faults."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from worker.build_types import Unreachable

T = TypeVar("T")
# A step tried again while the farm's part it needs does not answer (retry_within, its fault
# and bound given).
Retry = Callable[[Callable[[], T]], T]

# The first wait after a fault, doubled after each retry up to the last.
FIRST_WAIT_S = 1.0
LONGEST_WAIT_S = 8.0


def retry_within(
    action: Callable[[], T],
    *,
    fault: Callable[[Exception], str | None],
    bound_s: float,
    part: str,
    again: str,
    lost: str,
    log: Callable[[str], None],
    pause: Callable[[float], None],
) -> T:
    """Runs `action` until it succeeds or raises what `fault` does not call the farm's (its
    cause in words, or None). Each retry logs "`part` did not answer (cause): `again` in N s";
    past `bound_s` after the first fault, Unreachable says "`part` did not answer for <bound>;
    `lost`" (the build is handed back, or fails once its attempts are spent). `pause` waits,
    and raises if the build is stopped meanwhile."""
    first_fault = None
    wait = FIRST_WAIT_S
    while True:
        try:
            return action()
        except Exception as e:
            cause = fault(e)
            if cause is None:
                raise
            first_fault = time.monotonic() if first_fault is None else first_fault
            left = bound_s - (time.monotonic() - first_fault)
            if left <= 0:
                said = f"{part} did not answer for {duration(bound_s)}; {lost}"
                raise Unreachable(said, part, bound_s) from e
            log(f"{part} did not answer ({cause}): {again} in {round(min(wait, left), 1):g} s")
            pause(min(wait, left))
            wait = min(wait * 2, LONGEST_WAIT_S)


def duration(seconds: float) -> str:
    """A bound in words: whole minutes as minutes, anything else in seconds."""
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:g} s"
