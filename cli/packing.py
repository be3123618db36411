"""A build context directory packed as .tar.gz the way `docker build` sends it: `.dockerignore`
read as Docker reads it, its patterns matched by docker-py's port of Docker's matcher
(`**`, `!` exceptions, a matched directory excludes what it holds), the Dockerfile and the
.dockerignore always sent. Files are streamed into the archive, never read whole.

The archive is reproducible: entries sorted, owners zeroed, no time in the gzip header, so
the same tree gives the same archive (and the same SHA-256, which the farm uses as the
build's commit_sha and image tag)."""

from __future__ import annotations

import gzip
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from docker.utils.build import exclude_paths

DOCKERIGNORE = ".dockerignore"
COMPRESS_LEVEL = 6


class PackError(Exception):
    """The directory cannot be packed; the message is for the user."""


@dataclass(frozen=True)
class Packed:
    files: int
    bytes_in: int


def read_dockerignore(root: Path) -> list[str]:
    """The patterns of root/.dockerignore, as Docker reads them: a leading BOM dropped, lines
    trimmed, blank lines and `#` comments skipped, `! pattern` as `!pattern`, paths cleaned
    and made relative to the context."""
    path = root / DOCKERIGNORE
    if not path.is_file():
        return []
    patterns = []
    text = path.read_text(encoding="utf-8", errors="replace").removeprefix("\ufeff")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = os.path.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
        patterns.append("!" + line if invert else line)
    return patterns


def context_paths(root: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Relative paths (files, links and directories) that go into the context, sorted."""
    patterns = read_dockerignore(root)
    return sorted(exclude_paths(str(root), patterns, dockerfile=os.path.normpath(dockerfile)))


def _tarinfo(tar: tarfile.TarFile, root: Path, relative: str) -> tarfile.TarInfo | None:
    info = tar.gettarinfo(str(root / relative), arcname=relative)
    if info is None or not (info.isfile() or info.isdir() or info.issym() or info.islnk()):
        return None  # sockets, FIFOs and devices are not build context
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    return info


def pack_directory(root: Path, out: IO[bytes], dockerfile: str = "Dockerfile") -> Packed:
    root = Path(root)
    if not root.is_dir():
        raise PackError(f"{root} is not a directory")
    files = size = 0
    try:
        paths = context_paths(root, dockerfile)
        with (
            gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=COMPRESS_LEVEL) as gz,
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for relative in paths:
                info = _tarinfo(tar, root, relative)
                if info is None:
                    continue
                if info.isfile():
                    with open(root / relative, "rb") as data:
                        tar.addfile(info, data)
                    files += 1
                    size += info.size
                else:
                    tar.addfile(info)
    except OSError as e:
        raise PackError(f"cannot pack {root}: {e.strerror or e}: {e.filename or ''}".rstrip(": ")) from None
    return Packed(files, size)
