"""Git sources with a real git: transports limited, size and time capped, full SHA resolved."""

import subprocess
import threading
import uuid
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.config import Config
from common.models import Build, utc_now
from common.outbound import OutboundRule, parse_networks
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


def _no_s3(action):
    """A git source reads nothing from S3: nothing to retry."""
    return action()


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
    return fetch_source(config, None, git_build(url), scratch, lambda line: None, _no_s3)


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


# The outbound address rule at the worker (common/outbound.py): only loopback addresses here.


class _Server:
    """An HTTP server on a loopback address, in a thread: a git repository served over "dumb"
    HTTP from `root`, or a redirect of every request to `redirect_to`; counts its requests."""

    def __init__(self, address: str, root: Path | None = None, redirect_to: str | None = None) -> None:
        server = self

        class Handler(SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs) -> None:
                super().__init__(*args, directory=str(root or "/nonexistent"), **kwargs)

            def do_GET(self) -> None:
                server.requests += 1
                if redirect_to is None:
                    super().do_GET()
                    return
                self.send_response(301)
                self.send_header("Location", redirect_to + self.path)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.requests = 0
        self.http = ThreadingHTTPServer((address, 0), Handler)
        self.port = self.http.server_address[1]
        threading.Thread(target=self.http.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def bare_repo(tmp_path: Path) -> Path:
    make_repo(tmp_path / "work", {"Dockerfile": b"FROM scratch\n"})
    bare = tmp_path / "srv" / "app.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(tmp_path / "work"), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    return bare.parent


def resolving(host: str, addresses: list[str]):
    """A resolver that knows one name: what a DNS server under a tenant's control answers."""

    def resolve(name: str, port: int) -> list[str]:
        assert name == host, name
        return addresses

    return resolve


def fetch_with(tmp_path: Path, url: str, outbound: OutboundRule, lines: list[str] | None = None):
    scratch = tmp_path / f"scratch-{uuid.uuid4().hex[:6]}"
    scratch.mkdir()
    log = lines.append if lines is not None else (lambda line: None)
    return fetch_source(Config(), None, git_build(url), scratch, log, _no_s3, outbound)


def test_a_git_host_on_loopback_is_refused_by_default_before_any_connection(tmp_path):
    # Given a git server on loopback and the farm's default rule
    server = _Server("127.0.0.1", bare_repo(tmp_path))
    try:
        # When a build clones from it, Then it is refused and the server saw no request
        with pytest.raises(SourceError, match="Refused to clone .* '127.0.0.1' is a loopback address"):
            fetch_with(tmp_path, f"http://127.0.0.1:{server.port}/app.git", OutboundRule())
        assert server.requests == 0
    finally:
        server.close()


def test_git_connects_to_the_address_the_rule_checked_not_to_a_new_answer_of_dns(tmp_path):
    # Given a git server on 127.0.0.2, the only address the operator opened, and a host name the
    # check resolves there while the system's resolver says 127.0.0.1 (a DNS rebinding: /etc/hosts
    # stands for the attacker's second answer)
    server = _Server("127.0.0.2", bare_repo(tmp_path))
    rule = OutboundRule(parse_networks("127.0.0.2/32"), resolving("localhost", ["127.0.0.2"]))
    try:
        # When a build clones from that name
        source = fetch_with(tmp_path, f"http://localhost:{server.port}/app.git", rule)
        # Then git went to the checked address (nothing listens on 127.0.0.1 at that port)
        assert (source.context_dir / "Dockerfile").exists() and server.requests > 0
    finally:
        server.close()


def test_git_follows_no_redirect_to_an_address_that_was_never_checked(tmp_path):
    # Given a server the rule allows that redirects to a git server elsewhere
    target = _Server("127.0.0.3", bare_repo(tmp_path))
    redirector = _Server("127.0.0.2", redirect_to=f"http://127.0.0.3:{target.port}")
    rule = OutboundRule(parse_networks("127.0.0.2/32"))
    try:
        # When a build clones from the redirector, Then the clone fails and the target saw nothing
        with pytest.raises(SourceError, match="git clone failed"):
            fetch_with(tmp_path, f"http://127.0.0.2:{redirector.port}/app.git", rule)
        assert redirector.requests > 0 and target.requests == 0
    finally:
        redirector.close()
        target.close()


def test_credentials_of_a_stored_url_are_never_logged_and_the_url_is_refused(tmp_path):
    lines: list[str] = []
    with pytest.raises(SourceError) as refused:
        fetch_with(tmp_path, "http://user:s3cret@127.0.0.1:9/app.git", OutboundRule(), lines)
    assert "credentials" in str(refused.value) and "s3cret" not in str(refused.value) + "".join(lines)
    assert "http://***@127.0.0.1:9/app.git" in str(refused.value)
