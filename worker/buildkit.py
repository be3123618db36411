"""Runs a build with BuildKit, through the docker CLI as a subprocess: docker-py cannot drive
BuildKit (docker/docker-py#2230, it does not speak the engine's /session protocol) and no
maintained Python library does. The CLI's plain progress becomes the build's log
(worker/buildkit_progress.py); another thread can stop the build at any moment by killing the
CLI's process group, which ends its session with the engine and so the build on the engine.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from common.config import Config
from worker.build_types import (
    BuildOutcome,
    BuildSpec,
    DockerError,
    EngineGone,
    InfrastructureFault,
    Log,
    missing_dockerfile,
)
from worker.buildkit_progress import PlainProgress
from worker.log_lines import LineCutter

# What is read of the CLI's output at once.
READ_BYTES = 64 * 1024
# How often the CLI prints the output its steps made since it last printed (its TTY_DISPLAY_RATE).
CLI_PRINT_INTERVAL_MS = 10
_PR_SET_PDEATHSIG = 1
# The CLI sends a context from stdin in a request of its own beside the build's; engine 20.10
# sometimes looks for it before it is registered (seen about once in 8 builds on a loaded host).
_CONTEXT_LOST = "failed to read downloaded context"


class ContextLost(DockerError):
    """The engine lost the context sent on stdin before the build read it: nothing was built,
    and the same build may run again."""


# Writes the context to the CLI's stdin; raises to stop the build before the context is whole.
Feed = Callable[[BinaryIO], object]


def _die_with_worker() -> None:
    """In the CLI's process, before exec: a worker killed with -9 takes its builds with it."""
    ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class BuildKitRun:
    """One `docker build`; `abort` may be called from any thread, before, during or after it."""

    def __init__(self, config: Config, engine_gone: Callable[[], bool]) -> None:
        self.config = config
        # Whether the engine went away since the build started (worker/engine_watch.py).
        self.engine_gone = engine_gone
        self._process: subprocess.Popen | None = None
        self._aborted = False
        self._lock = threading.Lock()

    def abort(self) -> None:
        with self._lock:
            self._aborted = True
            if self._process is not None:
                _kill(self._process)

    def run(self, spec: BuildSpec, context: Path | Feed, scratch: Path, log: Log) -> BuildOutcome:
        """Builds `spec.tag` from a directory or from the gzip tar `context` writes; `scratch` is
        a private folder of the build."""
        directory = isinstance(context, Path)
        # The CLI reads a folder's Dockerfile path from its own working directory.
        dockerfile = str(context / spec.dockerfile) if directory else spec.dockerfile
        command = [*self._command(spec, dockerfile), str(context) if directory else "-"]
        started = time.monotonic()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL if directory else subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=self._environment(scratch),
                process_group=0,
                preexec_fn=_die_with_worker,
            )
        except FileNotFoundError:
            raise InfrastructureFault(
                f"The worker has no docker CLI at {self.config.docker_cli}: "
                "install Debian's docker.io or set BUILDFARM_DOCKER_CLI"
            ) from None
        with self._lock:
            self._process = process
        if self._aborted:
            self.abort()
        feeder = None if directory else _Feeder(process, context, started)
        progress = PlainProgress(log)
        # The CLI prints a step's output line whole, however long: it reaches the log in pieces.
        lines = LineCutter(progress.feed, self.config.log_max_line_bytes)
        for chunk in iter(lambda: process.stdout.read1(READ_BYTES), b""):
            lines.feed(chunk)
        lines.finish()
        returncode = process.wait()
        process.stdout.close()
        if feeder is not None:
            feeder.join()
        error = progress.finish(failed=returncode != 0)
        if returncode != 0:
            if feeder is not None and feeder.error is not None:
                raise feeder.error
            # The engine, not the CLI's words, tells an engine gone from a failed build.
            if self.engine_gone():
                raise EngineGone()
            error = error or f"docker build exited with status {returncode}"
            if _CONTEXT_LOST in error:
                raise ContextLost(error)
            raise DockerError(self._explain(error, spec))
        return BuildOutcome(
            progress.step_count, progress.cached_count, feeder.finished - started if feeder else 0.0
        )

    def _command(self, spec: BuildSpec, dockerfile: str) -> list[str]:
        command = [self.config.docker_cli, "build", "--progress=plain", "--tag", spec.tag]
        command += ["--file", dockerfile, "--build-arg", "BUILDKIT_INLINE_CACHE=1"]
        for name, value in sorted(spec.build_args.items()):
            command += ["--build-arg", f"{name}={value}"]
        for name, path in sorted(spec.secrets.items()):
            command += ["--secret", f"id={name},src={path}"]
        if spec.no_cache:
            command.append("--no-cache")
        else:
            for image in spec.cache_from:
                command += ["--cache-from", image]
        return command

    def _environment(self, scratch: Path) -> dict[str, str]:
        # Only the docker settings the operator gave the worker (registry logins, for base images
        # and --cache-from): else an empty folder of the build, never a user's own.
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(scratch),
            "DOCKER_CONFIG": os.environ.get("DOCKER_CONFIG") or str(scratch / ".docker"),
            "DOCKER_HOST": self.config.docker_host,
            "DOCKER_BUILDKIT": "1",
            # The CLI's default, 100 ms, alone made a live line's p99 latency 100-140 ms.
            "TTY_DISPLAY_RATE": str(CLI_PRINT_INTERVAL_MS),
        }

    @staticmethod
    def _explain(error: str, spec: BuildSpec) -> str:
        if "failed to read dockerfile" in error:
            return missing_dockerfile(spec.dockerfile)
        return error


def _kill(process: subprocess.Popen) -> None:
    """Kills the CLI and anything it started (its process group)."""
    with contextlib.suppress(ProcessLookupError):  # already ended
        os.killpg(process.pid, signal.SIGKILL)


class _Feeder(threading.Thread):
    """Writes the context to the CLI's stdin beside the thread that reads its output; a feed that
    raises kills the CLI (nothing is built) and its error becomes the build's."""

    def __init__(self, process: subprocess.Popen, feed: Feed, started: float) -> None:
        super().__init__(name="context-feed", daemon=True)
        self.process = process
        self.feed = feed
        self.error: Exception | None = None
        self.finished = started
        self.start()

    def run(self) -> None:
        stdin = self.process.stdin
        try:
            self.feed(stdin)
            stdin.close()
        except BrokenPipeError:
            pass  # the CLI stopped reading: it ended, and says why in its output
        except Exception as e:
            # Killed before stdin closes: the engine never sees the end of the context.
            self.error = e
            _kill(self.process)
        self.finished = time.monotonic()
        with contextlib.suppress(OSError):
            stdin.close()
