"""The Deployments API: create, list, get, delete, upload (checked, capped)."""

import hashlib
import io
import tarfile
import tempfile
from pathlib import Path

import pytest

from tests.conftest import EXTRACT_CAP, unique_subdomain
from tests.farm import create_archive_deployment
from tests.tar_exploits import SHAPES, exploit_archive

pytestmark = pytest.mark.in_process


def small_archive(files: dict[str, bytes] | None = None) -> bytes:
    files = files or {"Dockerfile": b"FROM scratch\nCOPY a.txt /\n", "a.txt": b"hello\n"}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_a_git_deployment_is_created_with_defaults_and_listed(client):
    subdomain = unique_subdomain()
    response = client.post(
        "/deployments",
        json={"name": "My app", "subdomain": subdomain, "repo_url": "http://127.0.0.1:9/app.git"},
    )
    assert response.status_code == 201
    created = response.json()
    assert created["source_type"] == "git" and created["branch"] == "main"
    assert created["dockerfile_path"] == "Dockerfile" and created["status"] == "created"
    assert created["created_at"].endswith("Z")
    assert response.headers["Location"].endswith(created["id"])
    # The webhook secret is shown in the create response only (tests/test_e2e_webhooks.py).
    assert len(created.pop("webhook_secret")) == 64
    assert client.get(f"/deployments/{created['id']}").json() == created
    assert [d["id"] for d in client.get("/deployments").json()] == [created["id"]]


def test_deployments_are_listed_newest_first_with_cursor_paging(client):
    ids = [create_archive_deployment(client)["id"] for _ in range(5)]
    first = client.get("/deployments", params={"limit": 2})
    assert [d["id"] for d in first.json()] == ids[::-1][:2]
    seen = [d["id"] for d in first.json()]
    link = first.links["next"]["url"]
    while link:
        page = client.get(link.removeprefix("/api/v1"))
        seen += [d["id"] for d in page.json()]
        link = page.links.get("next", {}).get("url")
    assert seen == ids[::-1]


def test_a_subdomain_belongs_to_one_deployment_only(client):
    subdomain = unique_subdomain()
    body = {"name": "a", "subdomain": subdomain, "source_type": "archive"}
    assert client.post("/deployments", json=body).status_code == 201
    again = client.post("/deployments", json=body)
    assert again.status_code == 409 and again.json()["error"] == "conflict"


@pytest.mark.parametrize(
    "body,fragment",
    [
        ({"subdomain": "x", "source_type": "archive"}, "'name' is required"),
        ({"name": "a", "subdomain": "Bad_Label", "source_type": "archive"}, "DNS label"),
        ({"name": "a", "subdomain": "x", "repo_url": "file:///etc/passwd"}, "schemes"),
        ({"name": "a", "subdomain": "x", "repo_url": "-uhttps://x"}, "leading '-'"),
        ({"name": "a", "subdomain": "x"}, "'repo_url' is required"),
        ({"name": "a", "subdomain": "x", "repo_url": "https://h/r", "branch": "--upload-pack=x"}, "branch"),
        ({"name": "a", "subdomain": "x", "source_type": "archive", "dockerfile_path": "../x"}, "context"),
        ({"name": "a", "subdomain": "x", "source_type": "archive", "dockerfile_path": "/etc/x"}, "context"),
        (
            {"name": "a", "subdomain": "x", "source_type": "archive", "repo_url": "https://h/r"},
            "no 'repo_url'",
        ),
        ({"name": "a", "subdomain": "x", "source_type": "svn"}, "'git' or 'archive'"),
        ({"name": 5, "subdomain": "x", "source_type": "archive"}, "type string"),
        ({"name": True, "subdomain": "x", "source_type": "archive"}, "type string"),
        ({"name": "a" * 101, "subdomain": "x", "source_type": "archive"}, "at most 100"),
        ({"name": "a", "subdomain": "x", "source_type": "archive", "extra": 1}, "Unknown field"),
    ],
)
def test_invalid_deployments_are_refused_with_a_clear_422(client, body, fragment):
    response = client.post("/deployments", json=body)
    assert response.status_code == 422
    assert response.json()["error"] == "validation_error"
    assert fragment in response.json()["message"]


def test_an_archive_upload_is_stored_in_s3_with_its_sha256(client, s3, config):
    deployment = create_archive_deployment(client)
    archive = small_archive()
    response = client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("src.tar.gz", archive)}
    )
    assert response.status_code == 200, response.text
    digest = hashlib.sha256(archive).hexdigest()
    assert response.json() == {"status": "uploaded", "size": len(archive), "sha256": digest}
    stored = s3.get_object(config.sources_bucket, f"{deployment['id']}/{digest}.tar.gz").read()
    assert stored == archive
    assert client.get(f"/deployments/{deployment['id']}").json()["archive"]["sha256"] == digest


def test_an_inline_dockerfile_is_stored_beside_the_archive(client, s3, config):
    deployment = create_archive_deployment(client)
    archive = small_archive({"a.txt": b"x"})
    response = client.post(
        f"/deployments/{deployment['id']}/upload",
        files={"archive": ("src.tar.gz", archive), "dockerfile": ("Dockerfile", b"FROM scratch\n")},
    )
    assert response.status_code == 200
    digest = hashlib.sha256(archive).hexdigest()
    assert (
        s3.get_object(config.sources_bucket, f"{deployment['id']}/{digest}.Dockerfile").read()
        == b"FROM scratch\n"
    )


@pytest.mark.parametrize(
    "files,status,fragment",
    [
        ({"archive": ("a.tar.gz", b"plain text, not gzip")}, 400, "gzip"),
        ({"other": ("x", b"\x1f\x8b")}, 400, "Unexpected form part"),
        ({"archive": ("a.tar.gz", b"")}, 400, "empty"),
    ],
)
def test_bad_uploads_are_refused_clearly(client, files, status, fragment):
    deployment = create_archive_deployment(client)
    response = client.post(f"/deployments/{deployment['id']}/upload", files=files)
    assert response.status_code == status
    assert fragment in response.json()["message"]


def test_upload_needs_multipart_and_an_archive_deployment(client):
    deployment = create_archive_deployment(client)
    wrong_type = client.post(
        f"/deployments/{deployment['id']}/upload",
        content=b"\x1f\x8b",
        headers={"Content-Type": "application/gzip"},
    )
    assert wrong_type.status_code == 415
    git = client.post(
        "/deployments",
        json={"name": "g", "subdomain": unique_subdomain(), "repo_url": "http://127.0.0.1:9/r.git"},
    ).json()
    refused = client.post(
        f"/deployments/{git['id']}/upload", files={"archive": ("a.tar.gz", small_archive())}
    )
    assert refused.status_code == 409


def test_deploying_an_archive_deployment_before_any_upload_is_a_conflict(client):
    deployment = create_archive_deployment(client)
    response = client.post(f"/deployments/{deployment['id']}/deploy")
    assert response.status_code == 409
    assert "upload" in response.json()["message"].lower()


def test_a_deployment_with_a_pending_build_cannot_be_deleted_until_it_is_cancelled(client):
    deployment = create_archive_deployment(client)
    client.post(f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", small_archive())})
    # No worker runs in this test: the build stays pending.
    build = client.post(f"/deployments/{deployment['id']}/deploy").json()
    refused = client.delete(f"/deployments/{deployment['id']}")
    assert refused.status_code == 409 and "cancel" in refused.json()["message"]
    assert client.post(f"/deployments/{deployment['id']}/builds/{build['id']}/cancel").status_code == 200
    assert client.delete(f"/deployments/{deployment['id']}").status_code == 204
    assert client.get(f"/deployments/{deployment['id']}").status_code == 404
    assert client.get(f"/deployments/{deployment['id']}/builds/{build['id']}").status_code == 404
    # The tenant may take its subdomain again (it stays reserved to it: a tombstone).
    again = client.post(
        "/deployments", json={"name": "b", "subdomain": deployment["subdomain"], "source_type": "archive"}
    )
    assert again.status_code == 201


@pytest.mark.parametrize(
    "entry_name,kind,link",
    [
        ("../evil", tarfile.REGTYPE, ""),
        ("/etc/evil", tarfile.REGTYPE, ""),
        ("l", tarfile.SYMTYPE, "/etc/passwd"),
        ("l", tarfile.SYMTYPE, "../../x"),
        ("h", tarfile.LNKTYPE, "../x"),
        ("dev", tarfile.CHRTYPE, ""),
    ],
)
def test_an_unsafe_archive_is_refused_at_upload_and_nothing_of_it_is_stored(
    client, s3, config, entry_name, kind, link
):
    deployment = create_archive_deployment(client)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(entry_name)
        info.type, info.linkname = kind, link
        tar.addfile(info, io.BytesIO(b"") if kind == tarfile.REGTYPE else None)
    assert_refused_as_unsafe_and_unstored(client, s3, config, deployment, buffer.getvalue())


@pytest.mark.parametrize("shape", SHAPES)
def test_a_published_tarfile_filter_bypass_is_refused_at_upload_and_nothing_of_it_is_stored(
    client, s3, config, shape
):
    # The shapes of CVE-2025-4517 and its siblings (tests/tar_exploits.py), sized for a build
    # folder of the worker's scratch space.
    deployment = create_archive_deployment(client)
    archive = exploit_archive(shape, Path(tempfile.gettempdir()) / "build-0123456789abcdef" / "context")
    assert_refused_as_unsafe_and_unstored(client, s3, config, deployment, archive)


def assert_refused_as_unsafe_and_unstored(client, s3, config, deployment: dict, archive: bytes) -> None:
    response = client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", archive)}
    )
    assert response.status_code == 400 and "Unsafe archive entry" in response.json()["message"]
    assert client.get(f"/deployments/{deployment['id']}").json()["archive"] is None
    assert list(s3.list_objects(config.sources_bucket, prefix=f"{deployment['id']}/")) == []


def test_a_gzip_bomb_and_a_truncated_archive_are_refused_at_upload(client):
    deployment = create_archive_deployment(client)
    bomb = io.BytesIO()
    with tarfile.open(fileobj=bomb, mode="w:gz") as tar:
        for i in range(3):
            info = tarfile.TarInfo(f"zeros{i}")
            info.size = EXTRACT_CAP // 2
            tar.addfile(info, _Zeros(info.size))
    assert len(bomb.getvalue()) < 20_000_000
    response = client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", bomb.getvalue())}
    )
    assert response.status_code == 413 and "expands to more than" in response.json()["message"]
    truncated = small_archive()[:-30]
    response = client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", truncated)}
    )
    assert response.status_code == 400 and "not a valid .tar.gz" in response.json()["message"]


class _Zeros(io.RawIOBase):
    """`size` zero bytes, produced on demand (a bomb's content is never held in memory)."""

    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.left)
        buffer[:n] = bytes(n)
        self.left -= n
        return n
