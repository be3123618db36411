"""The Dockerfile of a streamed archive, found among its members as they pass: the last entry of
its name, never through a link, within the size cap; the stream never blocks on the finder."""

import gzip
import io
import os
import tarfile
import threading
import time
from pathlib import Path

import pytest

from cli.packing import pack_directory
from worker.archive_dockerfile import ArchiveDockerfile
from worker.source import SourceError

CHUNK = 64 * 1024


def archive(*entries: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for entry in entries:
            if isinstance(entry, tarfile.TarInfo):
                tar.addfile(entry)
            else:
                info = tarfile.TarInfo(entry[0])
                info.size = len(entry[1])
                tar.addfile(info, io.BytesIO(entry[1]))
    return buffer.getvalue()


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def found(data: bytes, path: str = "Dockerfile", max_bytes: int = 1024) -> str:
    finder = ArchiveDockerfile(path, max_bytes)
    for start in range(0, len(data), CHUNK):
        finder.feed(data[start : start + CHUNK])
    return finder.text()


def test_the_dockerfile_is_found_after_large_members_and_by_a_dotted_name():
    noise = os.urandom(3 * 1024 * 1024)
    assert found(archive(("big", noise), ("./sub/Dockerfile", b"FROM x\n")), "sub/Dockerfile") == "FROM x\n"


def test_the_dockerfile_is_found_in_any_gzip_member_of_an_archive_packed_by_the_cli(tmp_path: Path):
    # `buildfarm deploy` starts a gzip member where its compression level changes: the random
    # file is stored in a member of its own, the Dockerfile after it in a third
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "data.bin").write_bytes(os.urandom(1024 * 1024))
    (tmp_path / "app" / "notes.txt").write_text("compressible\n" * 100)
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "Dockerfile").write_text("FROM x\n")
    packed = io.BytesIO()
    pack_directory(tmp_path, packed, "docker/Dockerfile")
    data = packed.getvalue()
    assert data.count(b"\x1f\x8b\x08") >= 3  # three members at least (a stored one is plain)
    assert found(data, "docker/Dockerfile") == "FROM x\n"


def test_a_large_archive_of_several_gzip_members_is_parsed_in_linear_time():
    # The Dockerfile in the first member, 32 MiB stored in a second one; the parse of the same
    # archive of one member is the yardstick (before the fix: minutes for 100 MiB)
    noise = os.urandom(32 * 1024 * 1024)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = 7
        tar.addfile(info, io.BytesIO(b"FROM x\n"))
        head = buffer.tell()
        info = tarfile.TarInfo("noise")
        info.size = len(noise)
        tar.addfile(info, io.BytesIO(noise))
    raw = buffer.getvalue()
    several = gzip.compress(raw[:head], 1) + gzip.compress(raw[head:], 0)
    one = gzip.compress(raw, 0)
    timings = []
    for data in (one, several):
        started = time.monotonic()
        assert found(data) == "FROM x\n"
        timings.append(time.monotonic() - started)
    assert timings[1] < 3 * timings[0] + 1, timings


def test_the_last_entry_of_the_name_is_the_one_the_engine_builds():
    assert found(archive(("Dockerfile", b"FROM first\n"), ("Dockerfile", b"FROM last\n"))) == "FROM last\n"


def test_a_dockerfile_that_is_a_link_is_refused():
    with pytest.raises(SourceError, match="not a regular file"):
        found(archive(("real", b"FROM x\n"), link("Dockerfile", "real")))
    with pytest.raises(SourceError, match="not a regular file"):
        found(archive(("real", b"FROM x\n"), link("Dockerfile", "real", tarfile.LNKTYPE)))


def test_a_dockerfile_under_a_linked_directory_is_refused():
    data = archive(("other/Dockerfile", b"FROM x\n"), link("sub", "other"), ("sub/Dockerfile", b"FROM y\n"))
    with pytest.raises(SourceError, match="a link in the archive"):
        found(data, "sub/Dockerfile")


def test_a_missing_or_too_large_dockerfile_is_the_users_mistake():
    with pytest.raises(SourceError, match="Dockerfile not found: no file 'Dockerfile' in the build context"):
        found(archive(("other", b"x")))
    with pytest.raises(SourceError, match="larger than 1024 bytes"):
        found(archive(("Dockerfile", b"#" * 1025)))


def test_a_broken_archive_is_said_so():
    with pytest.raises(SourceError, match="not a valid .tar.gz"):
        found(archive(("Dockerfile", b"FROM x\n"))[:-30] + b"garbage")


def test_a_stream_that_stops_early_is_not_blocked_by_the_finder():
    # Given an archive that is not a tar, fed in more chunks than the finder's backlog holds
    finder = ArchiveDockerfile("Dockerfile", 1024)
    feeding = threading.Thread(target=lambda: [finder.feed(b"\0" * CHUNK) for _ in range(64)])
    feeding.start()
    # Then the feed ends and the finder closes
    feeding.join(10)
    assert not feeding.is_alive()
    finder.close()
    with pytest.raises(SourceError):
        finder.text()
