"""The farm under measurement: the API and Dramatiq workers as real processes, against the
services `make bench` started (Redis, S3, registry, Docker engine), plus the small helpers
every benchmark needs."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from pathlib import Path

import httpx
from websockets.sync.client import connect

from common.config import Config
from common.records.call import SyncRunner
from common.redis_clients import sync_redis
from common.tenant_limits import set_limits
from common.tokens import create_token

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LOGS = ROOT / ".local" / "bench-logs"
BASE_IMAGE = "buildfarm/busybox:latest"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int | str) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def context_archive(dockerfile: str, files: dict[str, bytes] | None = None) -> bytes:
    """A build context as .tar.gz; a nonce file keeps every build out of the layer cache."""
    files = {"nonce": uuid.uuid4().bytes, **(files or {}), "Dockerfile": dockerfile.encode()}
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class Process:
    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path = ROOT) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.handle = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdout=(LOGS / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.pid = self.handle.pid

    def stop(self) -> None:
        if self.handle.poll() is None:
            os.killpg(self.pid, signal.SIGTERM)
            try:
                self.handle.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.handle.wait(10)


class Farm:
    """The API (gunicorn, 2 uvicorn workers) and a pool of workers, started and stopped here.
    The API and the workers run the code under `api_root`: this tree, or another version of it
    for a baseline."""

    def __init__(self, api_root: Path = ROOT, **env: str) -> None:
        self.api_root = api_root
        self.config = Config.from_env()
        # No metrics endpoint: its forked server would be one more child of each worker master.
        self.env = {**os.environ, "dramatiq_worker_timeout": "10", "BUILDFARM_METRICS_PORT": "0", **env}
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = Process(
            "api",
            [
                str(BIN / "gunicorn"),
                "api.asgi:app",
                "--worker-class",
                "api.server.ApiWorker",
                "--workers",
                "2",
                "--bind",
                f"127.0.0.1:{self.port}",
            ],
            self.env,
            cwd=api_root,
        )
        self.workers: list[Process] = []
        self.redis = sync_redis(self.config.redis_url)
        tenant = f"bench-{uuid.uuid4().hex[:8]}"
        self.token = create_token(self.redis, tenant, "bench")
        # The benches measure the farm's pace, not a tenant's limits (those have tests).
        unlimited = dict.fromkeys(("max_queued", "max_uploads", "max_log_streams", "deploys_per_minute"), 0)
        SyncRunner(self.redis).run(set_limits(tenant, unlimited))
        self.client = httpx.Client(
            base_url=f"{self.url}/api/v1", headers={"Authorization": f"Bearer {self.token}"}, timeout=120
        )
        self._wait(lambda: self._get("/readyz") == 200, "the API")

    def _get(self, path: str) -> int | None:
        try:
            return httpx.get(self.url + path, timeout=1).status_code
        except httpx.HTTPError:
            return None

    @staticmethod
    def _wait(predicate, what: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: timed out waiting for {what}")
            time.sleep(0.05)

    def start_workers(self, processes: int = 1, threads: int = 2, **env: str) -> Process:
        name = f"worker-{len(self.workers)}"
        worker = Process(
            name,
            [
                str(BIN / "dramatiq"),
                "worker.actors",
                "--queues",
                "builds",
                "integrations",
                "--processes",
                str(processes),
                "--threads",
                str(threads),
            ],
            {**self.env, "dramatiq_queue_prefetch": str(threads), **env},
            cwd=self.api_root,
        )
        log = LOGS / f"{name}.log"
        self._wait(
            lambda: log.read_text(errors="replace").count("ready for action") >= processes, "the workers"
        )
        self.workers.append(worker)
        return worker

    def stop_workers(self) -> None:
        for worker in self.workers:
            worker.stop()
        self.workers = []

    def archive_deployment(self, archive: bytes, client: httpx.Client | None = None, **fields) -> dict:
        """A new archive deployment with `archive` uploaded, as the bench's tenant or `client`'s."""
        client = client or self.client
        deployment = client.post(
            "/deployments",
            json={
                "name": "bench",
                "subdomain": f"bench-{uuid.uuid4().hex[:10]}",
                "source_type": "archive",
                **fields,
            },
        ).json()
        upload = f"/deployments/{deployment['id']}/upload"
        response = client.post(upload, files={"archive": ("a.tgz", archive)})
        response.raise_for_status()
        return deployment

    def deploy(self, deployment: dict) -> dict:
        response = self.client.post(f"/deployments/{deployment['id']}/deploy")
        response.raise_for_status()
        return response.json()

    def build(self, build: dict) -> dict:
        return self.client.get(f"/deployments/{build['deployment_id']}/builds/{build['id']}").json()

    def wait_done(self, build: dict, poll_s: float = 0.01, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while (current := self.build(build))["status"] in ("pending", "building"):
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: build {build['id']} still {current['status']} after {timeout} s")
            time.sleep(poll_s)
        return current

    def follow(self, build: dict, on_line=None) -> dict:
        """Follows the build's log WebSocket until the farm closes it at the build's end, as a
        CI client would, then reads the finished record. Waiting costs no CPU, unlike polling,
        which on 2 cores takes time from the build being timed."""
        path = f"/api/v1/deployments/{build['deployment_id']}/builds/{build['id']}/logs/stream"
        with connect(
            self.url.replace("http://", "ws://") + path,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            max_size=None,
        ) as ws:
            for message in ws:
                if on_line:
                    on_line(message, time.time_ns())
        return self.build(build)

    def close(self) -> None:
        self.stop_workers()
        self.api.stop()
        self.client.close()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
