"""Safe extraction of uploaded archives: nothing lands outside a fresh directory."""

import gzip
import io
import tarfile
from pathlib import Path

import pytest

from common.archive import ArchiveError, extract_archive, inspect_archive


def make_archive(path: Path, entries: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    data = data or {}
    with tarfile.open(path, "w:gz") as tar:
        for info in entries:
            payload = data.get(info.name)
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def entry(name: str, kind=tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def test_an_ordinary_archive_is_extracted(tmp_path):
    archive = make_archive(
        tmp_path / "a.tar.gz",
        [
            entry("app", tarfile.DIRTYPE),
            entry("app/Dockerfile"),
            entry("link", tarfile.SYMTYPE, "app/Dockerfile"),
        ],
        {"app/Dockerfile": b"FROM scratch\n"},
    )
    dest = tmp_path / "out"
    dest.mkdir()
    extract_archive(archive, dest, max_entries=10, max_bytes=1000)
    assert (dest / "app/Dockerfile").read_bytes() == b"FROM scratch\n"
    assert (dest / "link").read_bytes() == b"FROM scratch\n"


@pytest.mark.parametrize(
    "bad",
    [
        entry("/etc/evil"),
        entry("../evil"),
        entry("a/../../evil"),
        entry("link", tarfile.SYMTYPE, "/etc/passwd"),
        entry("link", tarfile.SYMTYPE, "../../outside"),
        entry("hard", tarfile.LNKTYPE, "../../outside"),
        entry("dev", tarfile.CHRTYPE),
        entry("fifo", tarfile.FIFOTYPE),
    ],
    ids=[
        "absolute",
        "dotdot",
        "nested-dotdot",
        "symlink-absolute",
        "symlink-out",
        "hardlink-out",
        "device",
        "fifo",
    ],
)
def test_entries_escaping_the_directory_or_making_devices_are_refused(tmp_path, bad):
    archive = make_archive(
        tmp_path / "a.tar.gz", [bad], {bad.name: b"x"} if bad.type == tarfile.REGTYPE else None
    )
    dest = tmp_path / "sandbox" / "out"
    dest.mkdir(parents=True)
    with pytest.raises(ArchiveError):
        extract_archive(archive, dest, max_entries=10, max_bytes=1000)
    assert not (tmp_path / "sandbox" / "evil").exists()
    assert not (tmp_path / "evil").exists()
    assert not any(p.name in ("dev", "fifo") for p in dest.rglob("*"))


def test_too_many_entries_are_refused(tmp_path):
    archive = make_archive(tmp_path / "a.tar.gz", [entry(f"f{i}") for i in range(11)])
    with pytest.raises(ArchiveError, match="more than 10 entries"):
        extract_archive(archive, tmp_path, max_entries=10, max_bytes=1000)


def test_a_gzip_bomb_stops_at_the_size_cap(tmp_path):
    # 50 MB of zeros compress to about 50 KB.
    archive = make_archive(tmp_path / "a.tar.gz", [entry("zeros")], {"zeros": bytes(50_000_000)})
    assert archive.stat().st_size < 200_000
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(ArchiveError, match="expands to more than"):
        extract_archive(archive, dest, max_entries=10, max_bytes=10_000_000)
    assert not (dest / "zeros").exists()


@pytest.mark.parametrize(
    "content", [b"not a tarball at all", gzip.compress(b"x" * 1000)[:-20]], ids=["garbage", "truncated-gzip"]
)
def test_garbage_and_truncated_archives_are_refused_clearly(tmp_path, content):
    archive = tmp_path / "a.tar.gz"
    archive.write_bytes(content)
    with pytest.raises(ArchiveError, match="not a valid"):
        extract_archive(archive, tmp_path, max_entries=10, max_bytes=1000)


def test_inspection_refuses_what_extraction_refuses_without_writing_anything(tmp_path):
    good = make_archive(tmp_path / "good.tar.gz", [entry("Dockerfile")], {"Dockerfile": b"FROM scratch\n"})
    assert inspect_archive(good, max_entries=10, max_bytes=1000) == 1
    for bad in ([entry("../x")], [entry("l", tarfile.SYMTYPE, "/etc/passwd")], [entry("d", tarfile.BLKTYPE)]):
        archive = make_archive(tmp_path / "bad.tar.gz", bad)
        with pytest.raises(ArchiveError):
            inspect_archive(archive, max_entries=10, max_bytes=1000)
    bomb = make_archive(tmp_path / "bomb.tar.gz", [entry("zeros")], {"zeros": bytes(20_000_000)})
    with pytest.raises(ArchiveError) as refused:
        inspect_archive(bomb, max_entries=10, max_bytes=1_000_000)
    assert refused.value.too_large
