"""Per-run directories for prometheus_client's multiprocess mode.

The API (gunicorn) and the workers (Dramatiq) each run several processes that count into one
set of metrics: every process writes its values to files in a directory they share
(PROMETHEUS_MULTIPROC_DIR) and the scrape sums the files. prometheus_client requires that
directory to be empty when a run starts, so each run gets its own, named after the pid of the
process that owns the run (the gunicorn master, the Dramatiq master):

    $TMPDIR/buildfarm-{kind}-metrics-{pid}[-suffix]

The owner removes it when the run ends; a run killed outright (SIGKILL) leaves it behind, and
the next run of that kind on the host removes it (`sweep`, common/owned_dirs.py). prometheus_client picks its
storage when it is first imported: the variable must be set before that, in every process.
"""

from __future__ import annotations

import os
import re
import stat
import tempfile
from pathlib import Path

from common.owned_dirs import remove_orphans

ENV = "PROMETHEUS_MULTIPROC_DIR"


def sweep(kind: str) -> None:
    """Removes this user's directories of `kind` whose owner process is gone."""
    remove_orphans(re.compile(rf"buildfarm-{re.escape(kind)}-metrics-(\d+)(-.*)?"))


def use_fresh_run_dir(kind: str) -> Path:
    """Makes a new directory of `kind` for a run owned by this process, and makes this process
    (and its children) count into it."""
    sweep(kind)
    path = Path(tempfile.mkdtemp(prefix=f"buildfarm-{kind}-metrics-{os.getpid()}-"))
    os.environ[ENV] = str(path)
    return path


def use_shared_run_dir(kind: str, owner_pid: int) -> Path:
    """Makes this process count into the directory of the run owned by `owner_pid`, made by
    whichever of its processes asks first; refused unless it is a real directory of this user
    (the name is predictable)."""
    path = Path(tempfile.gettempdir()) / f"buildfarm-{kind}-metrics-{owner_pid}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"{path} is not a directory of this user: metrics are off")
    os.environ[ENV] = str(path)
    return path
