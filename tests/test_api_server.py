"""What only the real server shows, so these tests talk to gunicorn: a request head over the
cap refused at the connection, a streamed body over the cap cut off with a 413, and the
server's memory while it streams a large upload to storage."""

import os
import socket
import tarfile
from pathlib import Path

import httpx

from tests.conftest import UPLOAD_CAP, rss_kib
from tests.farm import create_archive_deployment


def test_a_header_flood_is_refused_and_the_api_stays_up(api_url):
    host, port = api_url.removeprefix("http://").split(":")
    flood = "".join(f"X-Flood-{i}: {'a' * 1000}\r\n" for i in range(200))
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\n{flood}\r\n".encode())
        answer = s.recv(4096).decode(errors="replace")
    status = int(answer.split(" ", 2)[1]) if answer.startswith("HTTP/") else None
    assert answer == "" or 400 <= status < 500, answer[:200]
    assert httpx.get(f"{api_url}/healthz").status_code == 200


def api_rss_kib(api_url) -> int:
    """Total resident memory of the API server's processes (gunicorn master and workers)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"gunicorn" in cmdline and api_url.rsplit(":", 1)[1].encode() in cmdline:
                total += rss_kib(pid)
        except (OSError, IndexError):
            continue
    return total


def test_a_body_that_arrives_with_its_head_is_not_counted_in_the_heads_cap(api_url):
    host, port = api_url.removeprefix("http://").split(":")
    body = b"x" * (200 * 1024)
    head = f"POST /api/v1/deployments HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(head.encode() + body)  # one write: the server reads head and body together
        answer = s.recv(4096).decode(errors="replace")
    # the app's own answer (no token), not the server's refusal of a long head
    assert answer.startswith("HTTP/1.1 401 "), answer[:200]


def test_a_large_upload_is_streamed_not_held_in_memory(client, api_url, tmp_path):
    deployment = create_archive_deployment(client)
    payload = tmp_path / "big.bin"
    with payload.open("wb") as out:
        for _ in range(80):
            out.write(os.urandom(1024 * 1024))
    archive = tmp_path / "big.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(payload, arcname="big.bin")
    size = archive.stat().st_size
    before = api_rss_kib(api_url)

    def chunks():
        with archive.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                yield chunk

    response = client.post(
        f"/deployments/{deployment['id']}/upload",
        content=multipart_stream(chunks()),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["size"] == size
    growth_mib = (api_rss_kib(api_url) - before) / 1024
    print(f"API RSS growth for a {size >> 20} MiB upload: {growth_mib:.1f} MiB")
    assert growth_mib < 40


BOUNDARY = "buildfarm-test-boundary"


def multipart_stream(chunks):
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="archive"; filename="a.tar.gz"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()
    yield from chunks
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def test_an_upload_over_the_cap_is_refused_with_413_and_not_recorded(client):
    deployment = create_archive_deployment(client)
    chunks = [b"\x1f\x8b" + bytes(1024 * 1024 - 2)] + [bytes(1024 * 1024)] * (UPLOAD_CAP // (1024 * 1024) + 1)
    response = client.post(
        f"/deployments/{deployment['id']}/upload",
        content=multipart_stream(iter(chunks)),
        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
    )
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"
    assert client.get(f"/deployments/{deployment['id']}").json()["archive"] is None
