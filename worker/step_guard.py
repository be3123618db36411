"""Holds every RUN step on this host to the build limits: processes (BUILDFARM_BUILD_PIDS) and
CPU (BUILDFARM_BUILD_CPUS, a CFS quota) per step, and the bytes of the build's layers, the
step's own and those below it (BUILDFARM_BUILD_DISK_BYTES).

A step past its process limit cannot fork any more, but a fork bomb then spins until the build
times out; a step writing past its budget would fill the engine's disk. The guard kills such a
step: it fails with exit code 137, and so does its build. Which build a BuildKit step belongs
to, the engine does not say; the guard leaves a note on the host naming the killed step's
command and why, and the worker whose build failed on that command reads it
(`steps_stopped_explained`) to tell its user.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from common.config import Config
from worker.build_types import DockerError
from worker.disk_space import engine_data_root, tree_bytes
from worker.step_cgroups import CGROUP_ROOT, StepCgroup, buildkit_steps, container_step

logger = logging.getLogger("buildfarm.worker")

POLL_INTERVAL_S = 0.1
# A classic step's container is named before it starts; its cgroup is looked for this long.
CONTAINER_START_S = 60.0
# A build's layers are measured every this many polls (a walk of the step's upper layer).
DISK_EVERY_POLLS = 10
NOTES = Path(tempfile.gettempdir()) / "buildfarm-stopped-steps"
NOTE_TTL_S = 3600.0
LOCKS = Path(tempfile.gettempdir())
MIB = 1024 * 1024
# Sizes of the layers below running steps (they never change) kept at most: past it, all are
# measured again.
MAX_KNOWN_LAYERS = 10_000
# How each builder reports a failed step, with its command: BuildKit of engine 20.10, then the
# classic builder. A killed step exits with 137; a shell whose own fork was refused, before the
# guard killed its step, exits with an error of its own.
_FAILED_STEP = (
    re.compile(r"executor failed running \[(?P<command>.*)\]: exit code: \d+$", re.S),
    re.compile(r"The command '(?P<command>.*)' returned a non-zero code: \d+$", re.S),
)


class StepGuard(threading.Thread):
    """One per worker process. The classic builder's steps are handed over by the build that
    sees them start (`watch_container`); BuildKit's are the engine's, found by listing them, by
    one guard of the host per set of limits at a time (the holder of a lock file named after
    them: the next takes over when it dies) rather than by every worker process at once. Where
    guards with other limits share an engine, each step gets the strictest."""

    def __init__(
        self, config: Config, root: Path = CGROUP_ROOT, notes: Path = NOTES, locks: Path = LOCKS
    ) -> None:
        super().__init__(name="step-guard", daemon=True)
        self.config = config
        self.root = root
        self.notes = notes
        limits = f"{config.build_pids}-{config.build_cpus}-{config.build_disk_bytes}"
        self.leader_lock = locks / f"buildfarm-step-guard-{limits}.lock"
        self._leading = False
        self.stopping = threading.Event()
        self._containers: set[StepCgroup] = set()
        # Containers named but not started yet: id → when to stop looking for them.
        self._starting: dict[str, float] = {}
        self._lock = threading.Lock()
        # Layer below a step → its bytes (the guard's thread alone uses it).
        self._layer_bytes: dict[Path, int] = {}

    def watch_container(self, container_id: str) -> None:
        with self._lock:
            self._starting[container_id] = time.monotonic() + CONTAINER_START_S

    def run(self) -> None:
        polls = 0
        while not self.stopping.wait(POLL_INTERVAL_S):
            polls += 1
            with self._lock:
                self._containers = {step for step in self._containers if step.exists()}
                for container_id, until in list(self._starting.items()):
                    if step := container_step(container_id, self.root):
                        self._containers.add(step)
                    if step or time.monotonic() > until:
                        del self._starting[container_id]
                steps = [*(buildkit_steps(self.root) if self._lead() else ()), *self._containers]
            for step in steps:
                try:
                    self._check(step, measure_disk=polls % DISK_EVERY_POLLS == 0)
                except (OSError, ValueError):
                    continue  # the step ended meanwhile
                except Exception:  # the guard must outlive anything one step does
                    logger.exception("step guard: %s", step.path)

    def _lead(self) -> bool:
        """Whether this guard watches the engine's BuildKit steps: once it holds the lock, for
        the life of its process."""
        if not self._leading:
            # Held open for good once locked: the lock goes with the process.
            lock = os.open(self.leader_lock, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._leading = True
            except BlockingIOError:
                os.close(lock)
        return self._leading

    def _check(self, step: StepCgroup, measure_disk: bool) -> None:
        config = self.config
        step.limit(config.build_pids, config.build_cpus)
        if step.refused_forks():
            # The limit in force, which the strictest guard of the host wrote, not this one's.
            pids = step.pids_limit() or config.build_pids
            self._kill(
                step,
                f"The build reached its limit of {pids} processes in one step "
                "(BUILDFARM_BUILD_PIDS): the step was stopped",
            )
        elif measure_disk and self._disk_bytes(step) > config.build_disk_bytes:
            self._kill(
                step,
                f"The build's layers (its base image's included) took more than "
                f"{config.build_disk_bytes / MIB:.0f} MiB, its disk budget (BUILDFARM_BUILD_DISK_BYTES): "
                "the step was stopped",
            )

    def _disk_bytes(self, step: StepCgroup) -> int:
        """What the build has on disk so far: the step's writes and the layers below it."""
        layers = step.layers()
        if layers is None:
            return 0
        upper, lowers = layers
        if len(self._layer_bytes) > MAX_KNOWN_LAYERS:
            self._layer_bytes.clear()
        for lower in lowers:
            if lower not in self._layer_bytes:
                self._layer_bytes[lower] = tree_bytes(lower)
        return tree_bytes(upper) + sum(self._layer_bytes[lower] for lower in lowers)

    # Not `_stop`: threading.Thread has a method of that name, which it calls after a fork.
    def _kill(self, step: StepCgroup, reason: str) -> None:
        # The note first: the build may fail as soon as its step is killed.
        data_root = engine_data_root(self.config.docker_host)
        if command := data_root and step.command(data_root):
            _write_note(self.notes, command, reason)
        processes = len(step.processes())
        step.kill()
        logger.warning(
            "step %s stopped with %d processes: %s (command: %.200s)", step.name, processes, reason, command
        )


def _note_name(command: str) -> str:
    return hashlib.sha256(command.encode()).hexdigest()[:32]


def _write_note(notes: Path, command: str, reason: str) -> None:
    notes.mkdir(mode=0o700, exist_ok=True)
    now = time.time()
    for old in notes.iterdir():
        with contextlib.suppress(OSError):
            if old.stat().st_mtime < now - NOTE_TTL_S:
                old.unlink()
    note = notes / f"{_note_name(command)}-{time.time_ns()}"
    note.write_text(json.dumps({"command": command, "reason": reason}))


@contextlib.contextmanager
def steps_stopped_explained(notes: Path = NOTES) -> Iterator[None]:
    """Around a build: a step the guard stopped fails with a bare exit code, which becomes the
    limit the step went past."""
    since = time.time()
    try:
        yield
    except DockerError as e:
        if reason := _stopped_step_reason(str(e), since, notes):
            raise DockerError(reason) from None
        raise


def _stopped_step_reason(error: str, since: float, notes: Path = NOTES) -> str | None:
    """Why the guard killed the step a build failed on (`error`, the engine's message), if it
    did, since `since` (the build's start, time.time())."""
    for pattern in _FAILED_STEP:
        if match := pattern.search(error.strip()):
            command = match["command"]
            break
    else:
        return None
    with contextlib.suppress(OSError):
        for note in sorted(notes.glob(f"{_note_name(command)}-*"), reverse=True):
            if int(note.name.rpartition("-")[2]) / 1e9 < since:
                break
            content = json.loads(note.read_text())
            if content["command"] == command:
                return content["reason"]
    return None
