"""Caps the memory of BuildKit's RUN steps on the worker's engine.

The engine's BuildKit (Docker 20.10) ignores `docker build --memory` and `--cgroup-parent`
(measured: a step allocated 300 MB under `--memory 64m`), but runs every RUN step in a child
of one cgroup, `docker/buildkit` under the engine's cgroup parent. A limit there holds all the
engine's steps together: a step that goes past it is killed by the kernel (exit code 137),
which fails its build as the user's. The classic builder caps each step itself
(worker/docker_build.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from common.config import Config

logger = logging.getLogger("buildfarm.worker")

CGROUP_ROOT = Path("/sys/fs/cgroup")
# BuildKit's cgroup under cgroupfs (v1: in the memory hierarchy; v2: unified), and its files:
# the limit, then the limit with swap (swap would let a step go past the limit).
_LAYOUTS = (
    (CGROUP_ROOT / "memory/docker/buildkit", "memory.limit_in_bytes", "memory.memsw.limit_in_bytes"),
    (CGROUP_ROOT / "docker/buildkit", "memory.max", "memory.swap.max"),
)


def cap_buildkit_memory(config: Config, root: Path = CGROUP_ROOT) -> Path | None:
    """Sets the limit where this host has BuildKit's cgroup (or can make it); None where it
    cannot: an engine on another host, or a worker without write access to the cgroups."""
    limit = config.build_memory_bytes
    for folder, memory, with_swap in _LAYOUTS:
        folder = root / folder.relative_to(CGROUP_ROOT)
        if not folder.parent.is_dir():
            continue
        try:
            folder.mkdir(exist_ok=True)
            swap_value = "0" if with_swap == "memory.swap.max" else str(limit)
            # memory+swap may never be below memory: lower memory first, raise with swap first.
            writes = [(memory, str(limit)), (with_swap, swap_value)]
            current = _read_int(folder / memory)
            for name, value in writes if current is None or limit <= current else writes[::-1]:
                if (folder / name).exists():
                    (folder / name).write_text(value)
        except OSError as e:
            logger.warning("cannot cap BuildKit's RUN steps in %s: %s", folder, e)
            return None
        return folder
    logger.warning("no cgroup of BuildKit on this host: RUN steps of BuildKit builds are not capped here")
    return None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None  # cgroup v2 says "max"
