"""A tenant's usage and its uploads in flight, through the real API (gunicorn, two processes) and
a real worker building on the Docker engine: build minutes accrue when builds end, and an upload
holds its tenant's slot exactly while it is in flight."""

from __future__ import annotations

import json
import threading
import uuid

import httpx
import pytest

from common.records import keys
from common.records.call import SyncRunner
from common.tenant_limits import set_limits
from tests.conftest import wait_until
from tests.farm import (
    archive_deployment,
    context_archive,
    create_archive_deployment,
    deploy,
    dockerfile,
    wait_for_status,
)
from tests.test_e2e_builds import parse_time
from tests.test_e2e_cli import run_cli

pytestmark = pytest.mark.e2e


def seconds_of(build: dict) -> float:
    return (parse_time(build["finished_at"]) - parse_time(build["started_at"])).total_seconds()


def test_build_minutes_accrue_when_builds_end_and_buildfarm_usage_shows_them(
    client, api_url, tenant_token, worker
):
    # Given a tenant whose build is running
    build = deploy(client, archive_deployment(client, context_archive(dockerfile("sleep 2"))))
    wait_for_status(client, build, statuses=("building",))
    running = client.get("/usage").json()
    assert (running["running"], running["queued"], running["build_minutes"]) == (1, 0, 0.0)
    # When it ends, and another one after it
    first = wait_for_status(client, build)
    second = wait_for_status(
        client, deploy(client, archive_deployment(client, context_archive(dockerfile("true"))))
    )
    assert (first["status"], second["status"]) == ("success", "success")
    # Then its build minutes are the two builds' time, from first start to end
    usage = client.get("/usage").json()
    expected = (seconds_of(first) + seconds_of(second)) / 60
    assert seconds_of(first) >= 2
    assert (usage["running"], usage["queued"]) == (0, 0)
    assert usage["build_minutes"] == pytest.approx(expected, abs=0.011)
    # And `buildfarm usage` prints the same
    printed = run_cli(api_url, tenant_token[1], "usage", "--json")
    assert printed.returncode == 0, printed.stderr
    assert json.loads(printed.stdout) == usage
    rows = dict(
        line.split(None, 1) for line in run_cli(api_url, tenant_token[1], "usage").stdout.splitlines()
    )
    assert (rows["build_minutes"], rows["queued"], rows["max_running"]) == (
        str(usage["build_minutes"]),
        "0",
        "no limit",
    )


def test_an_upload_in_flight_holds_its_tenants_slot_until_it_ends(
    client, api_url, tenant_token, redis_client
):
    # Given a tenant allowed one upload in flight, and an upload whose body is half sent
    SyncRunner(redis_client).run(set_limits(tenant_token[0], {"max_uploads": 1}))
    deployment = create_archive_deployment(client)
    url = f"{api_url}/api/v1/deployments/{deployment['id']}/upload"
    archive, boundary, go_on = context_archive(dockerfile("true")), uuid.uuid4().hex, threading.Event()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="archive"; filename="src.tar.gz"\r\n'
        "Content-Type: application/gzip\r\n\r\n"
    ).encode()

    def slow_body():
        yield head + archive[:16]
        go_on.wait(60)
        yield archive[16:] + f"\r\n--{boundary}--\r\n".encode()

    headers = {"Authorization": f"Bearer {tenant_token[1]}"}
    answers: list[httpx.Response] = []
    sending = threading.Thread(
        target=lambda: answers.append(
            httpx.post(
                url,
                content=slow_body(),
                headers={**headers, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=60,
            )
        )
    )
    sending.start()
    held = keys.tenant_slots(tenant_token[0], "max_uploads")
    try:
        wait_until(lambda: redis_client.zcard(held) == 1, 10, what="the upload to hold its slot")
        # When another upload comes meanwhile, it is refused with 429 and told when to try again
        files = {"archive": ("src.tar.gz", archive)}
        refused = client.post(f"/deployments/{deployment['id']}/upload", files=files)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "too_many_requests" and "max_uploads" in refused.json()["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 10
    finally:
        go_on.set()
        sending.join(60)
    # Then once the first upload is answered, its slot is free and the next upload goes through
    assert answers[0].status_code == 200, answers[0].text
    assert redis_client.zcard(held) == 0
    assert client.post(f"/deployments/{deployment['id']}/upload", files=files).status_code == 200
