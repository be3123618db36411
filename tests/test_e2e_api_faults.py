"""Issue 14, item 3: the API answers an infrastructure fault as such. Redis or S3 stopped under a
running API (a gunicorn server of its own, on a Redis and an S3 this test starts and stops):
uploads, deploys and reads get 503 with Retry-After in the standard body, within seconds, never
a 500; once the service is back, the same requests succeed."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx
import pytest

from common.tokens import create_token
from tests.conftest import BIN, Process, free_port, process_env, wait_until
from tests.farm import context_archive, dockerfile

pytestmark = pytest.mark.e2e

# The Redis client retries for about 5 s (common/redis_clients.py), the S3 client about 6 s.
ANSWER_WITHIN_S = 12


class Farm:
    """Redis, S3 and an API of their own, so that stopping them disturbs no other test."""

    def __init__(self, tmp_path: Path, logs_dir: Path) -> None:
        self.redis_port, self.s3_port, api_port = free_port(), free_port(), free_port()
        self.redis = Process(
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "yes", "--dir", str(tmp_path)],
            process_env(),
            logs_dir / "faults-redis.log",
        )
        self.s3 = Process(
            [str(BIN / "rclone"), "serve", "s3", "--auth-key", "buildfarm,buildfarm-secret"]
            + ["--addr", f"127.0.0.1:{self.s3_port}", str(tmp_path / "s3")],
            process_env(),
            logs_dir / "faults-s3.log",
        )
        self.env = process_env(
            BUILDFARM_REDIS_URL=f"redis://127.0.0.1:{self.redis_port}/0",
            BUILDFARM_S3_ENDPOINT=f"127.0.0.1:{self.s3_port}",
        )
        self.api = Process(
            [str(BIN / "gunicorn"), "api.asgi:app", "--worker-class", "api.server.ApiWorker"]
            + ["--workers", "1", "--bind", f"127.0.0.1:{api_port}"],
            self.env,
            logs_dir / "faults-api.log",
        )
        self.url = f"http://127.0.0.1:{api_port}"
        wait_until(self.ready, 30, what="the API on its own Redis and S3")

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def client(self) -> httpx.Client:
        import redis

        token = create_token(redis.Redis(port=self.redis_port), f"faults-{uuid.uuid4().hex[:8]}", "tests")
        return httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
        )

    def stop(self) -> None:
        for process in (self.api, self.s3, self.redis):
            process.stop()


@pytest.fixture
def farm(tmp_path, logs_dir):
    made = Farm(tmp_path, logs_dir)
    yield made
    made.stop()


def unavailable(answer: httpx.Response, part: str) -> None:
    assert answer.status_code == 503, answer.text
    assert answer.headers["Retry-After"] == "5"
    body = answer.json()
    assert body["error"] == "service_unavailable" and part in body["message"], body


def new_deployment(client: httpx.Client) -> dict:
    return client.post(
        "/deployments",
        json={"name": "faults", "subdomain": f"f-{uuid.uuid4().hex[:8]}", "source_type": "archive"},
    ).json()


def timed(call) -> httpx.Response:
    began = time.monotonic()
    answer = call()
    assert time.monotonic() - began < ANSWER_WITHIN_S, f"answered after {time.monotonic() - began:.1f} s"
    return answer


def test_with_s3_stopped_an_upload_is_a_503_with_retry_after_and_succeeds_once_s3_is_back(farm):
    with farm.client() as client:
        deployment = new_deployment(client)
        archive = context_archive(dockerfile("echo hi"))
        upload = f"/deployments/{deployment['id']}/upload"
        # Given S3 stopped
        farm.s3.stop()
        # When a source is uploaded, then the API says S3 is unavailable, within seconds
        unavailable(timed(lambda: client.post(upload, files={"archive": ("s.tar.gz", archive)})), "S3")
        # And once S3 is back, the same upload is stored
        farm.s3.start()
        wait_until(farm.ready, 30, what="S3 back")
        assert client.post(upload, files={"archive": ("s.tar.gz", archive)}).status_code == 200


def test_with_redis_stopped_reads_and_deploys_are_503s_with_retry_after_and_work_once_redis_is_back(farm):
    with farm.client() as client:
        deployment = new_deployment(client)
        # Given Redis stopped
        farm.redis.stop()
        # When the tenant reads and deploys, then each answer says Redis is unavailable
        unavailable(timed(lambda: client.get("/deployments")), "Redis")
        unavailable(timed(lambda: client.get(f"/deployments/{deployment['id']}")), "Redis")
        unavailable(timed(lambda: client.post(f"/deployments/{deployment['id']}/deploy", json={})), "Redis")
        # And once Redis is back (its AOF kept the records), reads answer again
        farm.redis.start()
        wait_until(farm.ready, 30, what="Redis back")
        assert client.get(f"/deployments/{deployment['id']}").json()["id"] == deployment["id"]
