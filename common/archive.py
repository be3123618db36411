"""Source archives (.tar.gz) from untrusted users: checked entry by entry and extracted only
into a given directory — no absolute paths, no `..`, no devices, no entry through a link and no
link leaving it — with the entry count and the expanded size capped (a gzip bomb stops at the
cap).

The link rule is the farm's own and purely lexical, so it holds on every Python: tarfile's
`data` filter resolves paths with os.path.realpath, which the 2025 bypasses defeat (symlink
chains longer than PATH_MAX stop realpath expanding, CVE-2025-4517 and its siblings); the filter
still refuses devices and strips modes, but safety never rests on its realpath. The whole
archive is checked before the first byte is written, so a refused archive writes nothing."""

from __future__ import annotations

import gzip
import os
import stat
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path


class ArchiveError(Exception):
    """Raised when an archive is unsafe, broken or too big; the message is for the user."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def _unsafe(member: tarfile.TarInfo, why: str) -> ArchiveError:
    return ArchiveError(f"Unsafe archive entry refused: '{member.name}' {why}")


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def _ancestors(parts: list[str]) -> Iterator[str]:
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _follow(member: tarfile.TarInfo, start: list[str], target: str, links: set[str]) -> str:
    """Walks a link's target from `start` as the kernel would, but lexically; refuses a target
    that is absolute, climbs above the tree, or goes on past a link (where `..` after a link
    leaves the lexical path: `current -> .` makes `current/..` the tree's parent)."""
    if target.startswith("/"):
        raise _unsafe(member, f"links to the absolute path '{target}'")
    path = list(start)
    steps = _parts(target)
    for index, step in enumerate(steps):
        if step == "..":
            if not path:
                raise _unsafe(member, f"links to '{target}', outside the build context")
            path.pop()
            continue
        path.append(step)
        if index < len(steps) - 1 and "/".join(path) in links:
            raise _unsafe(member, f"links to '{target}', through the link '{'/'.join(path)}'")
    return "/".join(path)


def _check_links(members: list[tarfile.TarInfo]) -> None:
    """No entry is under a link; a link's name appears once (it neither replaces an entry nor
    is replaced, so no later write follows it); a symbolic link's target stays in the tree
    without passing through a link; a hard link names a regular file earlier in the archive.
    Links are known from the whole archive, so their order does not matter."""
    links = {"/".join(_parts(m.name)) for m in members if m.issym() or m.islnk()}
    seen: set[str] = set()
    files: set[str] = set()
    for member in members:
        parts = _parts(member.name)
        name = "/".join(parts)
        for ancestor in _ancestors(parts):
            if ancestor in links:
                raise _unsafe(member, f"goes through the link '{ancestor}'")
        if name in links and not parts:
            raise _unsafe(member, "is a link in place of the build context itself")
        if name in links and name in seen:
            raise _unsafe(member, "shares its name with another entry, and one of them is a link")
        seen.add(name)
        if (member.issym() or member.islnk()) and not member.linkname:
            raise _unsafe(member, "is a link to nothing")
        if member.issym():
            _follow(member, parts[:-1], member.linkname, links)
        elif member.islnk():
            if _follow(member, [], member.linkname, links) not in files:
                raise _unsafe(member, "is a hard link to something other than a regular file before it")
        elif member.isreg():
            files.add(name)


def _refuse_links_on_disk(member: tarfile.TarInfo, dest: str) -> None:
    """Right before an entry is written: neither it nor a folder above it, nor a hard link's
    target, may be a link already on disk (one the archive made, or one in the tree before)."""
    paths = [member.name] + ([member.linkname] if member.islnk() else [])
    for path in paths:
        parts = _parts(path)
        for candidate in [*_ancestors(parts), "/".join(parts)]:
            try:
                mode = os.lstat(os.path.join(dest, candidate)).st_mode
            except (FileNotFoundError, NotADirectoryError):
                break
            if stat.S_ISLNK(mode):
                raise _unsafe(member, f"would be written through the link '{candidate}'")


def _extraction_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """The members come already through the data filter (_checked_members), before any write."""
    _refuse_links_on_disk(member, dest)
    return member


def _checked_members(
    tar: tarfile.TarFile, dest: Path, max_entries: int, max_bytes: int
) -> list[tarfile.TarInfo]:
    members: list[tarfile.TarInfo] = []
    total = 0
    for count, member in enumerate(tar, start=1):
        total += member.size
        if count > max_entries:
            raise ArchiveError(f"The archive has more than {max_entries} entries", too_large=True)
        if total > max_bytes:
            raise ArchiveError(f"The archive expands to more than {max_bytes} bytes", too_large=True)
        if member.name.startswith("/") or ".." in member.name.split("/"):
            raise _unsafe(member, "leaves the build context")
        members.append(member)
    _check_links(members)
    try:
        # The "data" filter refuses devices and other special files and strips unsafe modes.
        return [tarfile.data_filter(member, str(dest)) for member in members]
    except tarfile.FilterError as e:
        raise ArchiveError(f"Unsafe archive entry refused: {e}") from None


def inspect_archive(path: Path, max_entries: int, max_bytes: int) -> int:
    """Reads the whole archive once, as a stream, checking every entry and, at the end, the
    gzip trailer (a truncated upload fails here); returns the entry count. Writes nothing."""
    try:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            count = len(_checked_members(tar, Path("/nonexistent-context"), max_entries, max_bytes))
            trailing = 0
            while chunk := gz.read(1 << 20):
                trailing += len(chunk)
                if trailing > max_bytes:
                    raise ArchiveError(f"The archive expands to more than {max_bytes} bytes", too_large=True)
            return count
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise ArchiveError(f"The archive is not a valid .tar.gz: {e}") from None


def extract_archive(path: Path, dest: Path, max_entries: int, max_bytes: int) -> None:
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = _checked_members(tar, dest, max_entries, max_bytes)
            tar.extractall(dest, members=members, filter=_extraction_filter)
    except tarfile.FilterError as e:
        raise ArchiveError(f"Unsafe archive entry refused: {e}") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArchiveError(f"The archive is not a valid .tar.gz: {e}") from None
