"""What both builders (BuildKit, worker/buildkit.py; classic, worker/docker_build.py) take and
give back, and how they fail."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol


class Log(Protocol):
    """Where a builder writes the build's log (worker/logwriter.py LogWriter.line): `continued`
    marks a piece of a long line that the builder cut itself (worker/log_lines.py)."""

    def __call__(self, text: str, *, continued: bool = False) -> None: ...


class DockerError(Exception):
    """Raised when the engine reports a build or push error; the message is for the log."""


class InfrastructureFault(Exception):
    """A part of the farm (S3, the registry, the engine, Redis), not the user, failed the build:
    the message names the part and what became of the build, in words."""


class Unreachable(InfrastructureFault):
    """This worker did not reach `part` of the farm within its bound (seconds), where another
    worker (or this one later) may: the build is handed back (attempt + 1) while it has attempts
    left."""

    def __init__(self, message: str, part: str, bound_s: float) -> None:
        super().__init__(message)
        self.part, self.bound_s = part, bound_s


# The parts of the farm a build needs that a worker may not reach (Unreachable.part).
ENGINE = "The Docker engine"
REGISTRY = "The registry"
S3 = "S3"


class EngineGone(Unreachable):
    """The worker's engine stopped answering (its ping fails) while it ran the build: it is
    waited for within BUILDFARM_ENGINE_RETRY_S (worker/pipeline.py)."""

    def __init__(self, message: str = f"{ENGINE} went away during the build") -> None:
        super().__init__(message, ENGINE, bound_s=0.0)


def missing_dockerfile(path: str) -> str:
    """What a build whose Dockerfile is not in its context says, whoever finds it missing."""
    return f"Dockerfile not found: no file '{path}' in the build context"


@dataclass(frozen=True)
class BuildSpec:
    tag: str
    # A path inside the context (relative to it).
    dockerfile: str
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    # Images whose inline cache the build may reuse (BuildKit skips those it cannot find).
    cache_from: tuple[str, ...] = ()
    # Secret id → file holding its value, for `RUN --mount=type=secret,id=…` (BuildKit only).
    secrets: dict[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildOutcome:
    steps: int
    cached_steps: int
    # Seconds from the start until the engine had the whole context (0 for a directory).
    context_s: float = 0.0
