"""Fixtures on real services: Redis, S3, the Docker engine and registry that `make test`
starts, plus the API (gunicorn + uvicorn) and a Dramatiq worker started here as processes.
Contract tests, marked `in_process`, get the same API app in this process instead of the
server (tests/in_process.py).

A missing service skips a test on a laptop but fails it in CI (CI=true): a skipped test is
not a pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from common.config import Config
from common.records.call import AsyncRunner, SyncRunner
from common.s3 import create_s3, ensure_buckets
from common.tokens import create_token
from tests.in_process import InProcessTransport, serve_in_process

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
BASE_IMAGE = "buildfarm/busybox:latest"
# The test API's upload cap: big enough to show an upload is streamed, not held in memory.
UPLOAD_CAP = 96 * 1024 * 1024
# The test farm's cap on an archive's expanded size: small enough to bomb quickly.
EXTRACT_CAP = 256 * 1024 * 1024
# Where in-process clients send their requests (no name lookup happens).
IN_PROCESS_URL = "http://api.test"
# Where the tests' git servers listen: opened to the farm's outbound rule (common/outbound.py).
LOOPBACK = "127.0.0.0/8,::1/128"
# Short leases so that takeovers happen within seconds in tests (the default is 30 s).
FAST_LEASES = {"BUILDFARM_LEASE_TTL_S": "4", "BUILDFARM_REAPER_INTERVAL_S": "0.5"}


def _take_shard_services() -> None:
    """`make test` runs the suite in shards, each pytest-xdist worker on services of its own
    (deploy/local/test): this process takes its shard's settings before anything reads them."""
    shard = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    path = os.environ.get(f"BUILDFARM_TEST_SHARD_{shard}_ENV")
    if path:
        for line in Path(path).read_text().splitlines():
            name, _, value = shlex.split(line)[0].partition("=")
            os.environ[name] = value


_take_shard_services()


def missing(what: str) -> None:
    message = f"{what} is not available (run the tests with `make test`)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def config() -> Config:
    return Config.from_env()


@pytest.fixture(scope="session")
def redis_client(config: Config) -> redis.Redis:
    client = redis.Redis.from_url(config.redis_url)
    try:
        client.ping()
    except redis.ConnectionError:
        missing(f"Redis at {config.redis_url}")
    return client


@pytest.fixture(params=["sync", "async"])
def run(request, config: Config, redis_client: redis.Redis):
    """Runs a data-model operation (common.records) through one adapter, then the other: the
    model's tests are written once and hold for the worker (sync) and the API (async)."""
    if request.param == "sync":
        yield SyncRunner(redis_client).run
        return
    loop = asyncio.new_event_loop()
    client = aioredis.Redis.from_url(config.redis_url)
    runner = AsyncRunner(client)
    yield lambda operation: loop.run_until_complete(runner.run(operation))
    loop.run_until_complete(client.aclose())
    loop.close()


@pytest.fixture(scope="session")
def s3(config: Config):
    client = create_s3(config)
    try:
        ensure_buckets(client, config)
    except Exception:
        missing(f"S3 at {config.s3_endpoint}")
    return client


@pytest.fixture(scope="session")
def docker_client(config: Config):
    import docker

    client = docker.APIClient(base_url=config.docker_host, version="auto")
    try:
        client.inspect_image(BASE_IMAGE)
    except Exception:
        missing(f"a Docker engine at {config.docker_host} with the image {BASE_IMAGE}")
    return client


def rss_kib(pid: int | str) -> int:
    """Resident memory of one process, from /proc."""
    return int(Path(f"/proc/{pid}/status").read_text().split("VmRSS:")[1].split()[0])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate, timeout: float, interval: float = 0.1, what: str = "condition"):
    deadline, value = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last seen: {value!r:.300})")


class Process:
    """A child process in its own session, stopped with its whole process group."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args, self.env, self.log = args, env, log
        self.start()

    def start(self) -> None:
        """Starts the process, again after `stop` (its log goes on in the same file)."""
        self.handle = subprocess.Popen(
            self.args,
            cwd=ROOT,
            env=self.env,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.handle.pid

    def alive(self) -> bool:
        return self.handle.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if not self.alive():
            return
        os.killpg(self.handle.pid, sig)
        try:
            self.handle.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.handle.pid, signal.SIGKILL)
            self.handle.wait(10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def process_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "dramatiq_worker_timeout": "100",
            "BUILDFARM_LOG_ARCHIVE_RETRY_INTERVAL_S": "1",
            "BUILDFARM_MAX_EXTRACTED_BYTES": str(EXTRACT_CAP),
            # Test workers start and stop all the time: only the metrics tests serve metrics.
            "BUILDFARM_METRICS_PORT": "0",
            # The tests' git servers listen on loopback, which the farm refuses by default
            # (tests/test_hostile_api.py shows that with an API and a worker without this).
            "BUILDFARM_OUTBOUND_ALLOW": LOOPBACK,
        }
    )
    env.update(extra)
    return env


def api_env() -> dict[str, str]:
    """The environment of the API, in a server process or in this one: without the registry's
    login, which only workers hold."""
    env = process_env(BUILDFARM_MAX_UPLOAD_BYTES=str(UPLOAD_CAP))
    for name in ("BUILDFARM_REGISTRY_USERNAME", "BUILDFARM_REGISTRY_PASSWORD"):
        env.pop(name, None)
    return env


@pytest.fixture(scope="session")
def logs_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("process-logs")


def start_api(logs_dir: Path, name: str = "api", **env: str) -> tuple[Process, str]:
    """The real API: gunicorn with two uvicorn workers on a free port, ready; returns it and its URL."""
    port = free_port()
    server = Process(
        [
            str(BIN / "gunicorn"),
            "api.asgi:app",
            "--worker-class",
            "api.server.ApiWorker",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        {**api_env(), **env},
        logs_dir / f"{name}.log",
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.alive(), f"the API exited:\n{server.tail()}"
        try:
            return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, 30, what="the API to be ready")
    return server, url


@pytest.fixture(scope="session")
def api_url(redis_client, s3, logs_dir) -> str:
    """The real API of the tests (start_api)."""
    server, url = start_api(logs_dir)
    yield url
    server.stop()


@pytest.fixture(scope="session")
def in_process_api(redis_client, s3) -> InProcessTransport:
    """The API app in this process, with the server's settings, started once."""
    with serve_in_process(Config.from_env(api_env())) as transport:
        yield transport


def start_worker(logs_dir: Path, name: str = "worker", processes: int = 1, threads: int = 2, **env):
    # Prefetch no more messages than threads: idle processes must get the next build.
    env.setdefault("dramatiq_queue_prefetch", str(threads))
    return Process(
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
        process_env(**env),
        logs_dir / f"{name}-{uuid.uuid4().hex[:6]}.log",
    )


@pytest.fixture(scope="module")
def worker(redis_client, s3, docker_client, logs_dir):
    """One Dramatiq worker process with two threads, shared by a module's end-to-end tests."""
    process = start_worker(logs_dir)
    wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
    yield process
    process.stop()


@contextlib.contextmanager
def alone_on_the_queue(worker: Process, logs_dir: Path, name: str, **env: str):
    """Another worker, alone on the queue: the module's BuildKit worker is stopped meanwhile
    (it would take the builds otherwise) and started again after."""
    worker.stop()
    other = start_worker(logs_dir, name=name, **env)
    try:
        wait_until(lambda: "ready for action" in other.tail(), 30, what=f"the {name} worker to boot")
        yield other
    finally:
        other.stop()
        log, size = worker.log, worker.log.stat().st_size
        worker.start()
        # A restarted worker goes on in its log, or starts another.
        since = size if worker.log == log else 0
        wait_until(
            lambda: b"ready for action" in worker.log.read_bytes()[since:], 30, what="the worker to restart"
        )


@pytest.fixture
def classic_worker(worker, logs_dir):
    """A worker with the classic builder, alone on the queue."""
    with alone_on_the_queue(worker, logs_dir, "classic", BUILDFARM_BUILDER="classic") as classic:
        yield classic


@pytest.fixture
def tenant_token(redis_client) -> tuple[str, str]:
    """A fresh tenant and its token: tests never see each other's deployments."""
    tenant = f"t-{uuid.uuid4().hex[:12]}"
    return tenant, create_token(redis_client, tenant, "tests")


def api_client(request: pytest.FixtureRequest, path: str, headers: dict[str, str]) -> httpx.Client:
    """A client of the API at `path`: the app in this process for a test marked `in_process`,
    else the gunicorn server."""
    if request.node.get_closest_marker("in_process"):
        transport = request.getfixturevalue("in_process_api")
        return httpx.Client(base_url=IN_PROCESS_URL + path, headers=headers, transport=transport)
    return httpx.Client(base_url=request.getfixturevalue("api_url") + path, headers=headers, timeout=30)


@pytest.fixture
def client(request, tenant_token) -> httpx.Client:
    """The API's /api/v1 with a fresh tenant's token."""
    with api_client(request, "/api/v1", {"Authorization": f"Bearer {tenant_token[1]}"}) as c:
        yield c


@pytest.fixture
def anonymous_client(request) -> httpx.Client:
    """The API from its root, without a token."""
    with api_client(request, "", {}) as c:
        yield c


def unique_subdomain(prefix: str = "app") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def two_commit_repo(tmp_path):
    """A bare repository with two commits on main ("version one", "version two"), served
    over git's "dumb" HTTP by a static file server on loopback; yields (url, [sha1, sha2])."""
    work, bare = tmp_path / "work", tmp_path / "srv" / "app.git"
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    subprocess.run([*git, "init", "-q", str(work)], check=True)
    (work / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY . .\nRUN cat /app/version.txt\n")
    (work / "nonce").write_text(uuid.uuid4().hex)  # keeps the RUN step out of the layer cache
    shas = []
    for version in ("one", "two"):
        (work / "version.txt").write_text(f"version {version}\n")
        subprocess.run([*git, "-C", str(work), "add", "."], check=True)
        subprocess.run([*git, "-C", str(work), "commit", "-qm", version], check=True)
        head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True)
        shas.append(head.stdout.strip())
    with served_bare_repository(work, bare) as url:
        yield url, shas


@contextlib.contextmanager
def served_bare_repository(work: Path, bare: Path):
    """A bare clone of the repository `work` at `bare`, served over git's "dumb" HTTP by a
    static file server on loopback; yields its URL."""
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "-C", str(bare), "update-server-info"], check=True)
    port = free_port()
    server = subprocess.Popen(
        ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        cwd=bare.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/{bare.name}"

    def answers() -> bool:
        try:
            return httpx.get(f"{url}/HEAD").status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(answers, 10, what="the git server")
        yield url
    finally:
        server.terminate()
        server.wait()
