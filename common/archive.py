"""Source archives (.tar.gz) from untrusted users: checked entry by entry and extracted only
into a given directory — no absolute paths, no `..`, no links leaving it, no devices — with
the entry count and the expanded size capped (a gzip bomb stops at the cap)."""

from __future__ import annotations

import gzip
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path


class ArchiveError(Exception):
    """Raised when an archive is unsafe, broken or too big; the message is for the user."""

    def __init__(self, message: str, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


def _checked_members(
    tar: tarfile.TarFile, dest: Path, max_entries: int, max_bytes: int
) -> Iterator[tarfile.TarInfo]:
    total = 0
    for count, member in enumerate(tar, start=1):
        total += member.size
        if count > max_entries:
            raise ArchiveError(f"The archive has more than {max_entries} entries", too_large=True)
        if total > max_bytes:
            raise ArchiveError(f"The archive expands to more than {max_bytes} bytes", too_large=True)
        if member.name.startswith("/") or ".." in member.name.split("/"):
            raise ArchiveError(f"Unsafe archive entry refused: '{member.name}' leaves the build context")
        try:
            # The "data" filter refuses links out of `dest`, devices and other special files.
            yield tarfile.data_filter(member, str(dest))
        except tarfile.FilterError as e:
            raise ArchiveError(f"Unsafe archive entry refused: {e}") from None


def inspect_archive(path: Path, max_entries: int, max_bytes: int) -> int:
    """Reads the whole archive once, as a stream, checking every entry and, at the end, the
    gzip trailer (a truncated upload fails here); returns the entry count."""
    try:
        with gzip.open(path, "rb") as gz, tarfile.open(fileobj=gz, mode="r|") as tar:
            count = sum(
                1 for _ in _checked_members(tar, Path("/nonexistent-context"), max_entries, max_bytes)
            )
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
            members = list(_checked_members(tar, dest, max_entries, max_bytes))
            tar.extractall(dest, members=members, filter="data")
    except tarfile.FilterError as e:
        raise ArchiveError(f"Unsafe archive entry refused: {e}") from None
    except (tarfile.TarError, EOFError, OSError) as e:
        raise ArchiveError(f"The archive is not a valid .tar.gz: {e}") from None
