"""Disk on a worker host: the bytes a folder tree holds (a build step's writes, a build's
scratch folder), and whether the filesystems builds fill (the engine's data root, the scratch
folder's) have room for one more build."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from pathlib import Path

import docker

from common.config import Config

logger = logging.getLogger("buildfarm.worker")

GIB = 1024**3
MIB = 1024**2


def tree_bytes(root: Path) -> int:
    """Bytes of disk the files under `root` take (allocated blocks: a sparse file counts what
    it really holds). Links are not followed; entries that vanish meanwhile count for nothing."""
    total, folders = 0, [root]
    while folders:
        try:
            entries = os.scandir(folders.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                total += info.st_blocks * 512
                if stat.S_ISDIR(info.st_mode):
                    folders.append(Path(entry.path))
    return total


# Engine address → its data root, asked once per process (the engine answered).
_data_roots: dict[str, Path | None] = {}


def engine_data_root(docker_host: str) -> Path | None:
    """The engine's data root, where it is a folder of this host (not for a remote engine)."""
    if docker_host not in _data_roots:
        try:
            with docker.APIClient(base_url=docker_host, version="auto") as client:
                root = Path(client.info()["DockerRootDir"])
        except (docker.errors.DockerException, KeyError):
            return None  # asked again next time
        _data_roots[docker_host] = root if root.is_dir() else None
    return _data_roots[docker_host]


def scratch_over_budget(scratch: Path, budget: int) -> str | None:
    """Why a build's scratch folder (its source) is past its disk budget, or None."""
    if tree_bytes(scratch) <= budget:
        return None
    return (
        f"The build's source took more than {budget / MIB:.0f} MiB of the worker's disk, its budget "
        "(BUILDFARM_BUILD_DISK_BYTES)"
    )


def low_free_disk(config: Config, scratch: Path | None = None) -> str | None:
    """Why this worker must not take a build now (a filesystem below
    BUILDFARM_MIN_FREE_DISK_BYTES), or None."""
    folders = {"the scratch folder": scratch or Path(tempfile.gettempdir())}
    if engine_root := engine_data_root(config.docker_host):
        folders["the engine's data root"] = engine_root
    for what, folder in folders.items():
        usage = os.statvfs(folder)
        free = usage.f_bavail * usage.f_frsize
        if free < config.min_free_disk_bytes:
            return (
                f"{what} ({folder}) has {free / GIB:.1f} GiB free, below "
                f"BUILDFARM_MIN_FREE_DISK_BYTES ({config.min_free_disk_bytes / GIB:.1f} GiB)"
            )
    return None
