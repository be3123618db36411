"""The Dockerfile of a streamed archive, found among its members as they pass: the last entry of
its name, never through a link, within the size cap; the stream never blocks on the finder."""

import io
import os
import tarfile
import threading

import pytest

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
