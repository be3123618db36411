"""A stored source archive on its way to the engine (worker/archive_stream.py), against the real
S3 server: the inline Dockerfile goes first as a gzip member of its own, the archive follows as
stored, and an archive that no longer matches its SHA-256 never arrives whole."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile

import pytest

from common.models import Build
from common.s3 import archive_key
from tests.farm import building_build, context_archive
from worker.archive_stream import CHUNK, inline_dockerfile_name, stream_archive, tar_member
from worker.source import SourceError


def stored(s3, config, archive: bytes, sha256: str | None = None) -> Build:
    sha256 = sha256 or hashlib.sha256(archive).hexdigest()
    build = building_build(created_at="2026-12-01T00:00:00.000Z", commit_sha=sha256)
    key = archive_key(build.deployment_id, sha256)
    s3.put_object(config.sources_bucket, key, io.BytesIO(archive), len(archive))
    return build


def test_the_inline_dockerfile_and_the_archive_make_one_gzip_tar_holding_both(s3, config):
    archive = context_archive("FROM scratch\n", {"app.txt": b"hello\n"})
    build = stored(s3, config, archive)
    name = inline_dockerfile_name(build)
    out = io.BytesIO()
    size = stream_archive(config, s3, build, tar_member(name, b"FROM inline\n"), out)
    assert size == len(archive) and out.getvalue().endswith(archive)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue()), mode="r:gz") as tar:
        names = [member.name.removeprefix("./") for member in tar.getmembers()]
        assert names[0] == name and tar.extractfile(name).read() == b"FROM inline\n"
        assert {"Dockerfile", "app.txt"} <= set(names)


@pytest.mark.parametrize("size", [100, CHUNK * 2 + 5])
def test_an_archive_that_no_longer_matches_its_sha256_never_arrives_whole(s3, config, size):
    archive = os.urandom(size)
    build = stored(s3, config, archive, sha256=hashlib.sha256(b"what was uploaded").hexdigest())
    out = io.BytesIO()
    with pytest.raises(SourceError, match="does not match its SHA-256"):
        stream_archive(config, s3, build, b"", out)
    # Everything but the last chunk went out: the engine never holds a whole context.
    assert len(out.getvalue()) == size - (size % CHUNK or CHUNK)
    assert archive.startswith(out.getvalue())
