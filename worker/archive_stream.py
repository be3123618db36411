"""Streams a stored source archive into a BuildKit build as it is, never unpacked on the worker.

The engine takes a gzip tar on the CLI's stdin as the build context. An inline Dockerfile goes
first, as a gzip member of its own (a gzip file may be several members end to end, and a tar
ends only at its end-of-archive blocks, which the member leaves out), under a name the archive
cannot already hold. The archive follows byte for byte while its SHA-256 is computed; its last
chunk is held back until the digest matches, so the engine never receives a whole context that
fails the check and nothing of it is built. The Dockerfile's images are checked at the same point
(worker/archive_dockerfile.py finds it among the members as they pass).
"""

from __future__ import annotations

import gzip
import hashlib
import tarfile
from collections.abc import Callable
from typing import BinaryIO

from minio import Minio

from common.config import Config
from common.models import Build
from common.s3 import archive_key, dockerfile_key
from worker.archive_dockerfile import ArchiveDockerfile
from worker.source import SourceError

CHUNK = 1024 * 1024


def inline_dockerfile_name(build: Build) -> str:
    """Unique per build: an entry of the uploaded archive cannot take its place."""
    return f".buildfarm-{build.id}.Dockerfile"


def tar_member(name: str, data: bytes) -> bytes:
    """One gzip member holding a tar entry for `name`, without the tar's end-of-archive blocks."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    padding = b"\0" * (-len(data) % tarfile.BLOCKSIZE)
    return gzip.compress(info.tobuf(format=tarfile.PAX_FORMAT) + data + padding, compresslevel=1, mtime=0)


def fetch_inline_dockerfile(config: Config, s3: Minio, build: Build) -> bytes:
    response = s3.get_object(config.sources_bucket, dockerfile_key(build.deployment_id, build.commit_sha))
    try:
        return response.read()
    finally:
        response.close()
        response.release_conn()


def stream_archive(
    config: Config,
    s3: Minio,
    build: Build,
    head: bytes,
    out: BinaryIO,
    dockerfile: ArchiveDockerfile | None = None,
    check: Callable[[str], object] = lambda _: None,
) -> int:
    """Writes `head`, then the build's stored archive, to `out`; returns the archive's size.
    Raises SourceError before the last chunk if the SHA-256 differs from `build.commit_sha`; with
    `dockerfile`, `check` gets the Dockerfile's text there too, and raises to refuse the build."""
    out.write(head)
    digest, size, held = hashlib.sha256(), 0, b""
    response = s3.get_object(config.sources_bucket, archive_key(build.deployment_id, build.commit_sha))
    try:
        while chunk := response.read(CHUNK):
            if held:
                out.write(held)
            digest.update(chunk)
            if dockerfile is not None:
                dockerfile.feed(chunk)
            size += len(chunk)
            held = chunk
    finally:
        response.close()
        response.release_conn()
        if dockerfile is not None:
            dockerfile.close()
    if digest.hexdigest() != build.commit_sha:
        raise SourceError("The stored archive does not match its SHA-256: refusing to build it")
    if dockerfile is not None:
        check(dockerfile.text())
    out.write(held)
    return size
