"""Folders in the temporary directory named after the process that owns them (metrics runs,
build scratch folders). A process killed outright leaves its folder behind; whoever comes next
removes those whose owner is gone."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path


def alive(pid: int) -> bool:
    """Whether the process runs. A zombie is dead: a worker killed with its parent is reparented
    to PID 1, which in a container may reap it late or never, and its pid answers kill(0)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # someone else's process
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc here: kill(0) is all we know
    return stat.rpartition(")")[2].split()[0] != "Z"


def remove_orphans(pattern: re.Pattern[str], base: Path | None = None) -> int:
    """Removes this user's folders in `base` (the temporary directory) whose name matches
    `pattern`, its first group being the owner's pid, and whose owner is gone; returns how many."""
    removed = 0
    for entry in Path(base or tempfile.gettempdir()).iterdir():
        match = pattern.fullmatch(entry.name)
        if not match or alive(int(match.group(1))):
            continue
        try:
            if entry.lstat().st_uid == os.getuid() and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
