"""The CLI's packing of a build context directory: .dockerignore read and matched as Docker
does, a reproducible .tar.gz the farm accepts, and an upload reader that streams."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import subprocess
import tarfile
import zlib
from pathlib import Path

import pytest

from cli.dockerignore import context_paths, read_dockerignore
from cli.packing import (
    COMPRESS_LEVEL,
    STORE_LEVEL,
    PackError,
    compress_level,
    pack_directory,
)
from cli.progress import ProgressBar, ProgressReader
from common.archive import inspect_archive


def make_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def packed_names(root: Path, dockerfile: str = "Dockerfile") -> list[str]:
    buffer = io.BytesIO()
    pack_directory(root, buffer, dockerfile)
    buffer.seek(0)
    with tarfile.open(fileobj=buffer, mode="r:gz") as tar:
        return sorted(m.name for m in tar if not m.isdir())


def test_dockerignore_is_read_as_docker_reads_it(tmp_path):
    (tmp_path / ".dockerignore").write_text(
        "\ufeff# a comment\n\n  spaced.txt  \n/rooted\n! kept.txt\nbuild/../dist/\n./tmp\n"
    )
    assert read_dockerignore(tmp_path) == ["spaced.txt", "rooted", "!kept.txt", "dist", "tmp"]


def test_no_dockerignore_means_every_file_is_sent(tmp_path):
    make_tree(tmp_path, {"Dockerfile": "FROM x\n", "a.txt": "a", "sub/b.txt": "b"})
    assert packed_names(tmp_path) == ["Dockerfile", "a.txt", "sub/b.txt"]
    assert read_dockerignore(tmp_path) == []


def test_ignored_files_and_directories_are_left_out_of_the_archive(tmp_path):
    make_tree(
        tmp_path,
        {
            "Dockerfile": "FROM x\n",
            ".dockerignore": "ignored.txt\nsecrets/\nnode_modules\n",
            "ignored.txt": "no",
            "secrets/key": "no",
            "node_modules/pkg/index.js": "no",
            "app.py": "yes",
            "sub/ignored.txt": "yes: the pattern is anchored at the context root",
        },
    )
    assert packed_names(tmp_path) == [".dockerignore", "Dockerfile", "app.py", "sub/ignored.txt"]


def test_a_star_matches_one_level_and_a_double_star_any_depth(tmp_path):
    make_tree(
        tmp_path,
        {
            "Dockerfile": "FROM x\n",
            ".dockerignore": "*.log\n**/*.tmp\n*/cache\n",
            "top.log": "",
            "sub/inner.log": "",
            "a.tmp": "",
            "sub/deep/b.tmp": "",
            "sub/cache/c": "",
            "sub/deep/cache/d": "",
        },
    )
    assert packed_names(tmp_path) == [
        ".dockerignore",
        "Dockerfile",
        "sub/deep/cache/d",
        "sub/inner.log",
    ]


def test_an_exception_pattern_brings_back_a_file_inside_an_ignored_directory(tmp_path):
    make_tree(
        tmp_path,
        {
            "Dockerfile": "FROM x\n",
            ".dockerignore": "*.log\n!keep.log\nconfig\n!config/public.yml\n",
            "drop.log": "",
            "keep.log": "",
            "config/secret.yml": "",
            "config/public.yml": "",
        },
    )
    assert packed_names(tmp_path) == [".dockerignore", "Dockerfile", "config/public.yml", "keep.log"]


def test_the_last_matching_pattern_wins(tmp_path):
    make_tree(
        tmp_path,
        {"Dockerfile": "FROM x\n", ".dockerignore": "!a.txt\n*.txt\n", "a.txt": "", "b.md": ""},
    )
    assert packed_names(tmp_path) == [".dockerignore", "Dockerfile", "b.md"]


def test_the_matcher_answers_as_docker_pys_on_every_kind_of_pattern(tmp_path):
    """cli/dockerignore.py is a port of docker-py's matcher (kept as a dependency by the
    worker's classic builder): both must choose the same paths."""
    from docker.utils.build import exclude_paths

    files = [
        "Dockerfile",
        "build/Dockerfile.dev",
        "a.txt",
        "B.TXT",
        "C.TXT",
        "src/app.py",
        "src/app.pyc",
        "src/deep/x/y.pyc",
        "src/deep/keep.pyc",
        "docs/a.md",
        "docs/img/b.png",
        "node_modules/m/i.js",
        "logs/2024/app.log",
        "logs/keep/this.log",
        "x1",
        "xa",
        "[weird].txt",
        "dot/.hidden",
    ]
    make_tree(tmp_path, dict.fromkeys(files, ""))
    patterns = [
        "*.txt",
        "!b.txt",
        "**/*.pyc",
        "!src/deep/keep.pyc",
        "docs/*/",
        "node_modules",
        "logs/**",
        "!logs/keep",
        "x[0-9]",
        "x[!0-9]",
        "\\[weird\\].txt",
        "dot/.*",
        "../outside",
        "./src/./deep/../app.py",
        "build/Docker?ile.*",
    ]
    (tmp_path / ".dockerignore").write_text("\n".join(patterns) + "\n")
    for dockerfile in ("Dockerfile", "build/Dockerfile.dev"):
        expected = sorted(exclude_paths(str(tmp_path), read_dockerignore(tmp_path), dockerfile=dockerfile))
        assert context_paths(tmp_path, dockerfile) == expected


def test_the_dockerfile_and_dockerignore_are_sent_even_when_ignored(tmp_path):
    make_tree(
        tmp_path,
        {
            ".dockerignore": "*\n",
            "Dockerfile": "FROM x\n",
            "docker/Prod.Dockerfile": "FROM x\n",
            "app.py": "",
        },
    )
    assert packed_names(tmp_path) == [".dockerignore", "Dockerfile"]
    assert packed_names(tmp_path, "docker/Prod.Dockerfile") == [".dockerignore", "docker/Prod.Dockerfile"]


def test_the_same_tree_packs_to_the_same_bytes(tmp_path):
    make_tree(tmp_path, {"Dockerfile": "FROM x\n", "a.txt": "a", "sub/b.txt": "b" * 10000})
    first, second = io.BytesIO(), io.BytesIO()
    pack_directory(tmp_path, first)
    pack_directory(tmp_path, second)
    assert hashlib.sha256(first.getvalue()).digest() == hashlib.sha256(second.getvalue()).digest()
    first.seek(0)
    with tarfile.open(fileobj=first, mode="r:gz") as tar:
        assert {(m.uid, m.gid, m.uname, m.gname) for m in tar} == {(0, 0, "", "")}


def test_the_archive_keeps_contents_modes_and_inner_links_and_passes_the_farms_checks(tmp_path):
    root = make_tree(tmp_path / "ctx", {"Dockerfile": "FROM x\n", "bin/run.sh": "#!/bin/sh\necho hi\n"})
    (root / "bin/run.sh").chmod(0o755)
    (root / "run").symlink_to("bin/run.sh")
    out = tmp_path / "ctx.tar.gz"
    with out.open("wb") as f:
        packed = pack_directory(root, f)
    assert packed.files == 2 and packed.bytes_in == len("FROM x\n") + len("#!/bin/sh\necho hi\n")
    with tarfile.open(out, "r:gz") as tar:
        script = tar.getmember("bin/run.sh")
        assert script.mode & 0o777 == 0o755
        assert tar.extractfile(script).read() == b"#!/bin/sh\necho hi\n"
        assert tar.getmember("run").issym() and tar.getmember("run").linkname == "bin/run.sh"
    assert inspect_archive(out, max_entries=100, max_bytes=1 << 20) == 4  # Dockerfile, bin, bin/run.sh, run


def test_sockets_in_the_context_are_skipped(tmp_path):
    make_tree(tmp_path, {"Dockerfile": "FROM x\n"})
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(tmp_path / "app.sock"))
        assert "app.sock" in context_paths(tmp_path)
        assert packed_names(tmp_path) == ["Dockerfile"]


def test_a_file_is_not_a_context_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(PackError, match="is not a directory"):
        pack_directory(tmp_path / "file", io.BytesIO())


def test_the_upload_reader_streams_the_file_in_chunks_and_reports_progress(tmp_path):
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(300_000))
    out = io.StringIO()
    with path.open("rb") as f:
        reader = ProgressReader(f, ProgressBar(300_000, out=out))
        chunks = []
        while chunk := reader.read(65536):
            chunks.append(chunk)
    assert max(len(c) for c in chunks) == 65536 and b"".join(chunks) == path.read_bytes()
    lines = out.getvalue().splitlines()
    assert lines[-1].startswith("Uploading [" + "#" * 30 + "] 100%") and "293.0 KiB / 293.0 KiB" in lines[-1]
    assert 2 <= len(lines) <= 11, lines  # one line per 10 % off a terminal, not one per chunk


def test_incompressible_and_compressible_files_round_trip_exactly_each_at_its_own_level(tmp_path):
    # Given random files (stored, not compressed) between text files (compressed)
    noise = {f"data/noise{i}.bin": os.urandom(300_000) for i in range(3)}
    text = {"a.txt": "line of text\n" * 50_000, "data/z.txt": "more text\n" * 50_000}
    root = tmp_path / "ctx"
    for name, content in {"Dockerfile": "FROM x\nCOPY . /app\n", **noise, **text}.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    out = tmp_path / "ctx.tar.gz"
    # When the directory is packed
    with out.open("wb") as f:
        packed = pack_directory(root, f)
    # Then every file comes back byte for byte from a `r:gz` read, and from GNU tar
    with tarfile.open(out, mode="r:gz") as tar:
        back = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}
    expected = {name: c if isinstance(c, bytes) else c.encode() for name, c in {**noise, **text}.items()}
    assert back == {"Dockerfile": b"FROM x\nCOPY . /app\n", **expected}
    listed = subprocess.run(["tar", "-tzf", str(out)], capture_output=True, text=True, check=True).stdout
    assert sorted(listed.split()) == sorted([*back, "data/"])
    # And the text is compressed while the noise costs little more than its own size
    noise_bytes = sum(len(c) for c in noise.values())
    assert packed.bytes_in > out.stat().st_size > noise_bytes
    assert out.stat().st_size < noise_bytes + 0.05 * (packed.bytes_in - noise_bytes)
    assert inspect_archive(out, max_entries=100, max_bytes=10 << 20) == 7
    # And the archive is several gzip members: text, noise, text
    assert gzip_members(out.read_bytes()) == 3


def gzip_members(data: bytes) -> int:
    count = 0
    while data:
        member = zlib.decompressobj(wbits=31)
        member.decompress(data)
        data = member.unused_data
        count += 1
    return count


def test_a_large_file_is_stored_if_a_sample_barely_compresses_and_a_small_one_is_always_compressed():
    assert compress_level(io.BytesIO(os.urandom(200_000)), 200_000) == STORE_LEVEL
    assert compress_level(io.BytesIO(b"text " * 40_000), 200_000) == COMPRESS_LEVEL
    assert compress_level(io.BytesIO(os.urandom(1000)), 1000) == COMPRESS_LEVEL
    # A file compressible only after its sample is stored: the sample decides, and the file is
    # read again from its start
    data = io.BytesIO(os.urandom(100_000) + b"\0" * 100_000)
    assert compress_level(data, 200_000) == STORE_LEVEL and data.tell() == 0
