"""Git sources with a real git: transports limited, size and time capped, full SHA resolved."""

import subprocess
import uuid
from pathlib import Path

import pytest

from common.config import Config
from common.models import Build, utc_now
from worker.source import SourceError, fetch_source

GIT = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]


def make_repo(path: Path, files: dict[str, bytes]) -> str:
    subprocess.run([*GIT, "init", "-q", str(path)], check=True)
    for name, data in files.items():
        (path / name).write_bytes(data)
    subprocess.run([*GIT, "-C", str(path), "add", "."], check=True)
    subprocess.run([*GIT, "-C", str(path), "commit", "-qm", "c"], check=True)
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()


def git_build(url: str) -> Build:
    return Build(
        id=str(uuid.uuid4()),
        deployment_id="d",
        tenant="t",
        number=1,
        status="building",
        subdomain="s",
        source_type="git",
        dockerfile_path="Dockerfile",
        created_at=utc_now(),
        repo_url=url,
        branch="main",
    )


def fetch(tmp_path: Path, config: Config, url: str):
    scratch = tmp_path / f"scratch-{uuid.uuid4().hex[:6]}"
    scratch.mkdir()
    return fetch_source(config, None, git_build(url), scratch, lambda line: None)


def test_a_clone_resolves_the_full_commit_sha_and_drops_the_git_directory(tmp_path):
    sha = make_repo(tmp_path / "repo", {"Dockerfile": b"FROM scratch\n"})
    source = fetch(tmp_path, Config(allowed_git_schemes="file"), f"file://{tmp_path / 'repo'}")
    assert source.commit_sha == sha and len(sha) == 40
    assert (source.context_dir / "Dockerfile").exists() and not (source.context_dir / ".git").exists()


def test_a_transport_that_is_not_allowed_is_refused_by_git_itself(tmp_path):
    make_repo(tmp_path / "repo", {"Dockerfile": b"FROM scratch\n"})
    with pytest.raises(SourceError, match="git clone failed"):
        fetch(tmp_path, Config(allowed_git_schemes="https"), f"file://{tmp_path / 'repo'}")


def test_a_repository_over_the_size_cap_is_stopped(tmp_path):
    import os

    make_repo(tmp_path / "repo", {"Dockerfile": b"FROM scratch\n", "big.bin": os.urandom(3_000_000)})
    config = Config(allowed_git_schemes="file", max_extracted_bytes=1_000_000)
    with pytest.raises(SourceError, match="larger than 1000000 bytes"):
        fetch(tmp_path, config, f"file://{tmp_path / 'repo'}")
