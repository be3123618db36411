"""The classic builder (BUILDFARM_BUILDER=classic) and the push of every build: `docker build`
and `docker push` through docker-py's low-level client, turning their
JSON streams into log lines, and lets another thread abort either one at any moment."""

from __future__ import annotations

import functools
import re
import socket
from collections.abc import Callable
from pathlib import Path

import docker
import requests

from common.config import Config
from worker.build_types import BuildOutcome, BuildSpec, DockerError, EngineGone, Log
from worker.log_lines import LineCutter

# How long a ping may wait for the engine's answer.
PING_S = 3
_STEP = re.compile(r"Step \d+/\d+ : ")
_CACHED = " ---> Using cache"
# A step's container has started (its id, shortened).
_RUNNING = re.compile(r" ---> Running in ([0-9a-f]{12,64})")
# What the engine says when the registry is down or overloaded, rather than refusing the login or
# the image: worth pushing again.
_REGISTRY_DOWN = re.compile(
    r"dial tcp|connection refused|connection reset|i/o timeout|\bEOF\b|no such host"
    r"|Service Unavailable|Bad Gateway|Gateway Timeout|status:? 50[234]",
    re.IGNORECASE,
)


class PushFailed(DockerError):
    """Raised when the registry did not take the image; `engine_says` is the engine's reason."""

    def __init__(self, engine_says: str) -> None:
        super().__init__(f"Push failed: {engine_says}")
        self.engine_says = engine_says


def registry_down(error: Exception) -> str | None:
    """The engine's words if `error` is a push the registry did not answer, else None."""
    if isinstance(error, PushFailed) and _REGISTRY_DOWN.search(error.engine_says):
        return error.engine_says
    return None


class AbortableAPIClient(docker.APIClient):
    """Remembers the response being streamed, so that a watcher thread can cut it.

    Closing the stream makes the daemon abort a classic build and remove its RUN container;
    a blocking read gives no other chance to stop a step that prints nothing.
    """

    streaming_response = None

    def _stream_helper(self, response, decode=False):
        self.streaming_response = response
        return super()._stream_helper(response, decode)

    def abort_stream(self) -> None:
        response = self.streaming_response
        if response is None:
            return
        try:
            response.raw._fp.fp.raw._sock.shutdown(socket.SHUT_RDWR)
        except (AttributeError, OSError):
            response.close()


@functools.cache
def _api_version(docker_host: str) -> str:
    """The engine's API version, asked once per process rather than once per build."""
    client = docker.APIClient(base_url=docker_host, version="auto")
    try:
        return client.api_version
    finally:
        client.close()


def engine_answers(docker_host: str) -> bool:
    """Whether the engine answers a ping now: what tells an engine that went away from a build
    that failed, whatever the error said."""
    try:
        version = _api_version(docker_host)
        with docker.APIClient(base_url=docker_host, version=version, timeout=PING_S) as client:
            return client.ping()
    except (docker.errors.DockerException, requests.RequestException):
        return False


def create_docker(config: Config, engine_gone: Callable[[], bool] | None = None) -> AbortableAPIClient:
    """A client per build: aborting one build's stream must not touch another's. `engine_gone`
    tells whether the engine went away since the build started (worker/engine_watch.py; by
    default, whether it does not answer a ping)."""
    client = AbortableAPIClient(
        base_url=config.docker_host, version=_api_version(config.docker_host), timeout=300
    )
    client.engine_gone = engine_gone or (lambda: not engine_answers(config.docker_host))
    return client


def build_image(
    client: AbortableAPIClient,
    config: Config,
    spec: BuildSpec,
    context_dir: Path,
    log: Log,
    step_started: Callable[[str], None] | None = None,
) -> BuildOutcome:
    """Builds `spec.tag` from the directory; secrets and the cache of other images are BuildKit's.
    `step_started` gets the container of each RUN step as it starts (worker/step_guard.py). A
    build whose engine no longer answers raises EngineGone."""
    try:
        return _classic_build(client, config, spec, context_dir, log, step_started)
    except Exception as e:  # the stream's end, whatever docker-py raises: the engine tells
        if client.engine_gone():
            raise EngineGone() from e
        raise


def _classic_build(
    client: AbortableAPIClient,
    config: Config,
    spec: BuildSpec,
    context_dir: Path,
    log: Log,
    step_started: Callable[[str], None] | None,
) -> BuildOutcome:
    memory = config.build_memory_bytes
    stream = client.build(
        path=str(context_dir),
        dockerfile=spec.dockerfile,
        tag=spec.tag,
        buildargs=spec.build_args,
        nocache=spec.no_cache,
        rm=True,
        forcerm=True,
        decode=True,
        container_limits={"memory": memory, "memswap": memory, "cpushares": config.build_cpu_shares},
        shmsize=config.build_shm_bytes,
    )
    steps = cached = 0

    def count(line: str, continued: bool) -> None:
        nonlocal steps, cached
        if not continued:
            steps += bool(_STEP.match(line))
            cached += line == _CACHED
            if step_started and (running := _RUNNING.fullmatch(line)):
                step_started(running[1])
        log(line, continued=continued)

    # The daemon's `stream` chunks, cut into lines: a step's output without newlines never
    # builds up in the worker.
    lines, image_id = LineCutter(count, config.log_max_line_bytes), None
    for item in stream:
        if "stream" in item:
            lines.feed(item["stream"].encode("utf-8", "replace"))
        elif "error" in item:
            lines.finish()
            raise DockerError(item["error"].strip())
        elif "aux" in item:
            image_id = item["aux"].get("ID", image_id)
        elif item.get("status") and "progressDetail" not in item:
            lines.finish()
            log(item["status"])
    lines.finish()
    if image_id is None:
        raise DockerError("The build ended without producing an image")
    return BuildOutcome(steps, cached)


def push_image(
    client: AbortableAPIClient, tag: str, login: tuple[str, str] | None, log: Callable[[str], None]
) -> str:
    """Pushes `tag` with the registry's login (None: anonymously), logging one line per layer
    instead of progress bars; returns the digest."""
    repository, _, short = tag.rpartition(":")
    log(f"Pushing {tag}")
    auth = {"username": login[0], "password": login[1]} if login else None
    digest = None
    for item in client.push(repository, tag=short, stream=True, decode=True, auth_config=auth):
        if "error" in item:
            raise PushFailed(item["error"].strip())
        status = item.get("status", "")
        if "aux" in item:
            digest = item["aux"].get("Digest", digest)
        elif item.get("id") and (
            status in ("Pushed", "Layer already exists") or status.startswith("Mounted")
        ):
            log(f"{item['id']}: {status}")
        elif status and not item.get("id") and "progressDetail" not in item:
            log(status)
    if digest is None:
        raise DockerError("Push ended without a digest from the registry")
    return digest
