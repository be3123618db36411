"""Helpers for end-to-end tests: build contexts, deployments driven through HTTP, waits."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from common.config import Config
from common.models import Build, utc_now
from common.records import keys
from tests.conftest import BASE_IMAGE, ROOT, free_port, rss_kib, start_worker, unique_subdomain, wait_until

TERMINAL = ("success", "failed", "cancelled")
# The state folder of the services `make test` started (deploy/local/services).
STATE = Path(os.environ.get("BUILDFARM_STATE", ROOT / ".local"))


def registry_get(config: Config, path: str, **kwargs) -> httpx.Response:
    """GET http://REGISTRY/v2/PATH with the workers' login: the registry refuses anonymous reads."""
    auth = (config.registry_username, config.registry_password)
    return httpx.get(f"http://{config.registry}/v2/{path}", auth=auth, **kwargs)


def building_build(**fields) -> Build:
    """A build record as a worker holds it while it runs (of a made-up deployment), `fields` set."""
    values = {
        "id": str(uuid.uuid4()),
        "deployment_id": str(uuid.uuid4()),
        "tenant": "t",
        "number": 1,
        "status": "building",
        "subdomain": "app",
        "source_type": "archive",
        "dockerfile_path": "Dockerfile",
        "created_at": utc_now(),
    }
    return Build(**{**values, **fields})


def context_archive(dockerfile: str | None, files: dict[str, bytes] | None = None) -> bytes:
    # A file unique to each context: `COPY . .` then misses the layer cache, so RUN steps
    # really run and print.
    files = {"nonce": uuid.uuid4().bytes, **(files or {})}
    if dockerfile is not None:
        files["Dockerfile"] = dockerfile.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def dockerfile(*run_steps: str) -> str:
    steps = "".join(f"RUN {step}\n" for step in run_steps)
    return f'FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY . .\n{steps}EXPOSE 3000\nCMD ["cat", "/app/Dockerfile"]\n'


def create_archive_deployment(client, **extra) -> dict:
    response = client.post(
        "/deployments",
        json={"name": "app", "subdomain": unique_subdomain(), "source_type": "archive", **extra},
    )
    assert response.status_code == 201, response.text
    return response.json()


def archive_deployment(client: httpx.Client, archive: bytes, **fields) -> dict:
    created = client.post(
        "/deployments",
        json={"name": "e2e", "subdomain": unique_subdomain(), "source_type": "archive", **fields},
    )
    assert created.status_code == 201, created.text
    deployment = created.json()
    uploaded = client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("src.tar.gz", archive)}
    )
    assert uploaded.status_code == 200, uploaded.text
    return deployment


def deploy(client: httpx.Client, deployment: dict, **body) -> dict:
    response = client.post(f"/deployments/{deployment['id']}/deploy", json=body or None)
    assert response.status_code == 202, response.text
    return response.json()


def build_path(build: dict) -> str:
    return f"/deployments/{build['deployment_id']}/builds/{build['id']}"


def wait_for_status(client: httpx.Client, build: dict, statuses=TERMINAL, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = client.get(build_path(build)).json()
        if current["status"] in statuses:
            return current
        time.sleep(0.1)
    raise AssertionError(f"build {build['id']} not in {statuses} after {timeout} s: {current}")


def logs(client: httpx.Client, build: dict) -> str:
    response = client.get(build_path(build) + "/logs")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def build_in_its_run_step(client: httpx.Client, *run_steps: str) -> dict:
    """A build of a new archive deployment, once its first RUN step has started: the engine has
    the whole source by then (S3 has served it), and nothing is pushed yet."""
    build = deploy(client, archive_deployment(client, context_archive(dockerfile(*run_steps))))
    wait_for_status(client, build, statuses=("building",))
    wait_until(lambda: run_steps[0] in logs(client, build), 90, what="the build's RUN step")
    return build


@contextlib.contextmanager
def service_killed(name: str) -> Iterator[None]:
    """Kills a service of the test state (SIGKILL: it says no goodbye to its clients) and starts it
    again with deploy/local/services on the way out."""
    os.kill(int((STATE / f"pids/{name}.pid").read_text()), signal.SIGKILL)
    try:
        yield
    finally:
        subprocess.run([str(ROOT / "deploy/local/services"), "up"], check=True, capture_output=True)


def ws_url(api_url: str, build: dict, after: int | None = None) -> str:
    url = api_url.replace("http://", "ws://") + "/api/v1" + build_path(build) + "/logs/stream"
    return url if after is None else f"{url}?after={after}"


def ws_lines(api_url: str, token: str, build: dict, after: int | None = None, timeout: float = 120):
    """Every message of the log WebSocket until the server closes it; returns (lines, close code)."""
    lines = []
    with connect(
        ws_url(api_url, build, after),
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=10,
        close_timeout=5,
    ) as ws:
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                lines.append(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        except Exception as closed:  # ConnectionClosedOK ends the stream
            code = getattr(getattr(closed, "rcvd", None), "code", None)
            return lines, code
    raise AssertionError("the log stream did not close")


def worker_children_rss_kib(worker) -> int:
    """RSS of the Dramatiq worker processes (children of the master)."""
    children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
    return max(rss_kib(pid) for pid in children)


def archived_log(redis_client, s3, config, build, timeout: float) -> str:
    """The archived log, once the worker has confirmed its upload (an S3 server may show an
    object while it is still being written)."""
    wait_until(
        lambda: redis_client.hget(keys.build(build["id"]), "log_state") == b"archived",
        timeout,
        what="the log archive",
    )
    return s3.get_object(config.logs_bucket, f"{build['deployment_id']}/{build['id']}.log").read().decode()


def scrape(url: str) -> dict[tuple[str, frozenset], float]:
    """Every sample of a Prometheus text page, keyed by (name, labels)."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class MetricsWorker:
    """A Dramatiq worker (one process, two threads) serving its metrics on a port of its own."""

    def __init__(self, logs_dir, **env: str) -> None:
        self.logs_dir, self.env = logs_dir, env
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        self.start()

    def start(self) -> None:
        """Starts the worker, again after `stop` (a new process, on the same port)."""
        self.process = start_worker(
            self.logs_dir, name="metrics", BUILDFARM_METRICS_PORT=str(self.port), **self.env
        )
        wait_until(lambda: "ready for action" in self.process.tail(), 30, what="the worker to boot")
        wait_until(self._answers, 30, what="the worker's metrics endpoint")

    @property
    def log(self):
        return self.process.log

    def _answers(self) -> bool:
        assert self.process.alive(), self.process.tail()
        try:
            return httpx.get(self.url, timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def scrape(self) -> dict:
        return scrape(self.url)

    def stop(self) -> None:
        self.process.stop()


# Short worker heartbeats and expiry: a killed worker greys out and leaves GET /farm in seconds.
FAST_HEARTBEAT = {"BUILDFARM_WORKER_HEARTBEAT_S": "0.5", "BUILDFARM_WORKER_EXPIRY_S": "4"}


def worker_ids(process) -> list[str]:
    """The ids (host:pid) of the worker processes a Dramatiq master forked, as GET /farm lists them."""
    pid = process.pid
    return [
        f"{socket.gethostname()}:{child}"
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    ]


def failed_as_the_farms(client: httpx.Client, build: dict, error: str, attempt: int) -> str:
    """Asserts the build failed as the farm's fault (`infrastructure`) under `attempt`, with
    `error` said last in its log; the log."""
    assert (build["status"], build["error_kind"], build["error"], build["attempt"]) == (
        "failed",
        "infrastructure",
        error,
        attempt,
    )
    text = logs(client, build)
    assert text.endswith(f"ERROR: {error}\nBuild failed\n")
    return text
