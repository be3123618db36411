"""A build's private scratch folder (its source, its decrypted secret files), removed when the
build ends, and at a worker's start when the worker that made it is gone: a worker killed with
-9 cannot remove its own, and must not leave a build's secrets on disk."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from common.models import Build
from common.owned_dirs import remove_orphans

logger = logging.getLogger("buildfarm.worker")

PREFIX = "buildfarm-build-"
# The worker process's pid, then the build's id (8 hex), then tempfile's suffix.
_NAME = re.compile(rf"{PREFIX}(\d+)-[0-9a-f]{{8}}-.+")


@contextlib.contextmanager
def scratch_folder(build: Build) -> Iterator[Path]:
    """A fresh folder, only the worker's (mode 0700), named after its process."""
    with tempfile.TemporaryDirectory(prefix=f"{PREFIX}{os.getpid()}-{build.id[:8]}-") as folder:
        yield Path(folder)


def remove_dead_workers_folders(base: Path | None = None) -> int:
    """Removes the scratch folders of worker processes that no longer run; returns how many."""
    removed = remove_orphans(_NAME, base)
    if removed:
        logger.info("removed %d scratch folder(s) of workers that died", removed)
    return removed
