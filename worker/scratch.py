"""A build's private scratch folder (its source, its decrypted secret files), removed when the
build ends, and at a worker's start when the worker that made it is gone: a worker killed with
-9 cannot remove its own, and must not leave a build's secrets on disk."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from common.models import Build

logger = logging.getLogger("buildfarm.worker")

PREFIX = "buildfarm-"


@contextlib.contextmanager
def scratch_folder(build: Build) -> Iterator[Path]:
    """A fresh folder, only the worker's (mode 0700), named after its process."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-{build.id[:8]}-") as folder:
        yield Path(folder)


def remove_orphans(root: Path | None = None) -> int:
    """Removes the scratch folders of worker processes that no longer run; returns how many."""
    removed = 0
    for folder in Path(root or tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        pid = folder.name.removeprefix(PREFIX).split("-", 1)[0]
        if not pid.isdigit() or _running(int(pid)):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed += 1
    if removed:
        logger.info("removed %d scratch folder(s) of workers that died", removed)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
