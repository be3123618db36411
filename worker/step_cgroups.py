"""The cgroups (v1, cgroupfs) of RUN steps on this host, and what the worker does with one:
limit it, read what it uses, kill it whole.

The engine's BuildKit (Docker 20.10) runs each RUN step in a child of `docker/buildkit` named
at random, and ignores the limits a build asks for; the classic builder runs each step in a
container, `docker/<container id>`, whose limits docker-py cannot set beyond memory and CPU
shares. So the worker writes the limits into the step's cgroups itself, once they appear.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import docker

CGROUP_ROOT = Path("/sys/fs/cgroup")
# The cgroup parent of the engine's containers under the cgroupfs driver (dockerd's default),
# and the one cgroup below it whose children are BuildKit's steps.
CONTAINERS = "docker"
BUILDKIT_STEPS = f"{CONTAINERS}/buildkit"
UNLIMITED_PIDS = "max"
UNLIMITED_QUOTA = -1
# Hierarchies (cgroup v1) where the worker caps BuildKit's steps together: pids here, memory in
# worker/build_memory.py.
CAPPED_HIERARCHIES = ("pids", "memory")
ENGINE_TIMEOUT_S = 5
# Rounds of freeze-kill-thaw before a step is given up on (each kills every process seen).
KILL_ROUNDS = 10


@dataclass(frozen=True)
class StepCgroup:
    """One step's cgroup, by its path below each controller's hierarchy."""

    path: str
    root: Path = CGROUP_ROOT

    def _file(self, controller: str, name: str) -> Path:
        return self.root / controller / self.path / name

    @property
    def name(self) -> str:
        return self.path.rpartition("/")[2]

    def exists(self) -> bool:
        return self._file("pids", "").is_dir()

    def limit(self, pids: int, cpus: float) -> None:
        """Writes the limits where none is set yet or a looser one (runc sets none itself for
        these steps): of several workers on a host with other settings, the strictest stands."""
        current = self._file("pids", "pids.max").read_text().strip()
        if current == UNLIMITED_PIDS or int(current) > pids:
            self._file("pids", "pids.max").write_text(str(pids))
        period = int(self._file("cpu", "cpu.cfs_period_us").read_text())
        quota = int(self._file("cpu", "cpu.cfs_quota_us").read_text())
        if quota == UNLIMITED_QUOTA or quota > int(cpus * period):
            self._file("cpu", "cpu.cfs_quota_us").write_text(str(int(cpus * period)))

    def pids_limit(self) -> int | None:
        """The pids.max in force (a worker with stricter settings on the host may have set it)."""
        current = self._file("pids", "pids.max").read_text().strip()
        return None if current == UNLIMITED_PIDS else int(current)

    def processes(self) -> list[int]:
        return [int(pid) for pid in self._file("pids", "cgroup.procs").read_text().split()]

    def refused_forks(self) -> int:
        """Forks refused at this cgroup's own pids.max since it was made."""
        for line in self._file("pids", "pids.events").read_text().splitlines():
            name, _, count = line.partition(" ")
            if name == "max":
                return int(count)
        return 0

    def layers(self) -> tuple[Path, list[Path]] | None:
        """The layers of the step's root filesystem, an overlay read from the mount table of any
        of its processes: where its writes land (upper), and the layers below (the base image's
        and those of the build's earlier steps)."""
        for pid in self.processes():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/mountinfo").read_text().splitlines():
                    if line.split()[4] == "/" and " - overlay " in line:
                        options = dict(
                            option.partition("=")[::2] for option in line.rpartition(" ")[2].split(",")
                        )
                        lowers = [Path(lower) for lower in options.get("lowerdir", "").split(":") if lower]
                        return Path(options["upperdir"]), lowers
        return None

    def command(self, data_root: Path) -> str | None:
        """The step's command as the engine gave it (its processes may have exec'd another
        since), joined as the engine's error messages join it; None once the step is gone.
        Read from the engine's data root: BuildKit's runc bundle of the step (named as its
        cgroup), or the classic step container's config."""
        try:
            if self.path.startswith(f"{BUILDKIT_STEPS}/"):
                spec = json.loads((data_root / "buildkit/executor" / self.name / "config.json").read_text())
                argv = spec["process"]["args"]
            else:
                container = json.loads((data_root / "containers" / self.name / "config.v2.json").read_text())
                argv = container["Config"]["Cmd"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return " ".join(argv)

    def kill(self) -> None:
        """Kills every process of the step. Frozen first: a fork bomb cannot fork faster than
        it is killed, and a frozen process dies of SIGKILL as soon as it is thawed."""
        state = self._file("freezer", "freezer.state")
        for _ in range(KILL_ROUNDS):
            with contextlib.suppress(OSError):
                state.write_text("FROZEN")
            try:
                pids = self.processes()
            except OSError:
                return  # the cgroup is gone with its last process
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                state.write_text("THAWED")
            if not pids:
                return
            time.sleep(0.05)


def make_engine_parent(docker_host: str, root: Path = CGROUP_ROOT) -> list[Path]:
    """Makes the engine's cgroup parent where the worker caps BuildKit's steps, if the engine
    has not made it yet; returns the folders made. The engine makes it with its first container:
    a worker that boots before that (on a host just started) would find nowhere to write its caps,
    and every step of its builds would run with none. Only for an engine of this host (a unix
    socket) that uses the cgroupfs driver."""
    if not docker_host.startswith("unix://"):
        return []
    try:
        with docker.APIClient(base_url=docker_host, version="auto", timeout=ENGINE_TIMEOUT_S) as client:
            info = client.info()
    except docker.errors.DockerException:
        return []  # an engine that does not answer yet: the caps look for its parent as it is
    if info.get("CgroupDriver") != "cgroupfs":
        return []
    hierarchies = [root] if info.get("CgroupVersion") == "2" else [root / h for h in CAPPED_HIERARCHIES]
    made = []
    for hierarchy in hierarchies:
        folder = hierarchy / CONTAINERS
        if hierarchy.is_dir() and not folder.is_dir():
            # Made meanwhile, or no right to: the caps then find it, or warn.
            with contextlib.suppress(OSError):
                folder.mkdir()
                made.append(folder)
    return made


def buildkit_steps(root: Path = CGROUP_ROOT) -> list[StepCgroup]:
    """BuildKit's running steps on this host's engine."""
    try:
        entries = os.scandir(root / "pids" / BUILDKIT_STEPS)
    except OSError:
        return []
    with entries:
        return [StepCgroup(f"{BUILDKIT_STEPS}/{e.name}", root) for e in entries if e.is_dir()]


def container_step(container_id: str, root: Path = CGROUP_ROOT) -> StepCgroup | None:
    """The cgroup of a classic builder's step container, from the id (or its prefix) the build
    output names."""
    with contextlib.suppress(OSError), os.scandir(root / "pids" / CONTAINERS) as entries:
        for entry in entries:
            if entry.name.startswith(container_id) and entry.is_dir():
                return StepCgroup(f"{CONTAINERS}/{entry.name}", root)
    return None


def cap_buildkit_pids(limit: int, root: Path = CGROUP_ROOT) -> bool:
    """Caps the processes of all the engine's BuildKit steps together: a step forks before any
    worker has limited it, and the host has only pid_max processes for everyone."""
    folder = root / "pids" / BUILDKIT_STEPS
    try:
        folder.mkdir(exist_ok=True)
        (folder / "pids.max").write_text(str(limit))
    except OSError:
        return False
    return True
