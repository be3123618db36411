"""Two workers as two hosts: each in a network namespace of its own, reaching Redis and S3 over
a veth pair (the Docker socket is a file and stays reachable). One host's link is cut in the
middle of a build: the other host takes the build over, the cut-off host's later writes are
refused, and nothing is lost when the link returns.

Addresses live only on the veths this test creates (10.231.N.0/30), and everything is torn
down at the end. Without network namespaces (not root, no iproute2) the test fails."""

from __future__ import annotations

import subprocess

import pytest

from tests import netns
from tests.conftest import BIN, FAST_LEASES, Process, free_port, process_env, wait_until
from tests.farm import (
    archive_deployment,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    wait_for_status,
)

pytestmark = pytest.mark.e2e


@pytest.fixture(name="hosts")
def two_hosts():
    with netns.hosts(1, 2) as made:
        yield made


def test_a_cut_off_host_loses_its_build_to_another_host_and_its_late_writes_are_refused(
    hosts, logs_dir, tmp_path, tenant_token, docker_client
):
    import httpx

    # Given Redis and S3 reachable from both hosts, and the API on the root namespace
    redis_port, s3_port, api_port = free_port(), free_port(), free_port()
    gateways = [host.gateway for host in hosts]
    redis = Process(
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            *gateways,
            "--protected-mode",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        process_env(),
        logs_dir / "multihost-redis.log",
    )
    s3 = Process(
        [
            str(BIN / "rclone"),
            "serve",
            "s3",
            "--auth-key",
            "buildfarm,buildfarm-secret",
            *[a for g in ["127.0.0.1", *gateways] for a in ("--addr", f"{g}:{s3_port}")],
            str(tmp_path / "s3"),
        ],
        process_env(),
        logs_dir / "multihost-s3.log",
    )
    farm = {
        "BUILDFARM_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "BUILDFARM_S3_ENDPOINT": f"127.0.0.1:{s3_port}",
    }
    api = Process(
        [
            str(BIN / "gunicorn"),
            "api.asgi:app",
            "--worker-class",
            "api.server.ApiWorker",
            "--workers",
            "1",
            "--bind",
            f"127.0.0.1:{api_port}",
        ],
        process_env(**farm),
        logs_dir / "multihost-api.log",
    )
    workers: list[Process] = []
    try:
        url = f"http://127.0.0.1:{api_port}"
        wait_until(lambda: _ready(url), 30, what="the multi-host API")
        token = subprocess.run(
            [str(BIN / "buildfarm"), "token", "create", "--tenant", "hosts", "--name", "tests"],
            env=process_env(**farm),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        client = httpx.Client(
            base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        for host in hosts:
            env = process_env(
                **FAST_LEASES,
                BUILDFARM_REDIS_URL=f"redis://{host.gateway}:{redis_port}/0",
                BUILDFARM_S3_ENDPOINT=f"{host.gateway}:{s3_port}",
                dramatiq_queue_prefetch="1",
            )
            worker = Process(
                [
                    "ip",
                    "netns",
                    "exec",
                    host.netns,
                    str(BIN / "dramatiq"),
                    "worker.actors",
                    "--queues",
                    "builds",
                    "--processes",
                    "1",
                    "--threads",
                    "1",
                ],
                env,
                logs_dir / f"multihost-worker-{host.netns}.log",
            )
            workers.append(worker)
        for worker in workers:
            wait_until(lambda w=worker: "ready for action" in w.tail(), 30, what="a worker in its namespace")

        deployment = archive_deployment(
            client, context_archive(dockerfile("echo started && sleep 6 && echo finished"))
        )
        build = deploy(client, deployment)
        wait_until(
            lambda: "started" in client.get(build_path(build) + "/logs").text, 60, what="the build to start"
        )
        first = client.get(build_path(build)).json()
        cut = next(i for i, w in enumerate(workers) if _runs(w, first))

        # When the host running the build is cut off from the network
        hosts[cut].link(up=False)
        wait_until(
            lambda: client.get(build_path(build)).json()["attempt"] == 2,
            60,
            interval=0.1,
            what="the other host to take over",
        )
        # ...and comes back while the other host builds
        hosts[cut].link(up=True)
        done = wait_for_status(client, build, timeout=90)

        # Then the other host finished the build under attempt 2
        assert done["status"] == "success" and done["attempt"] == 2
        assert _runs(workers[1 - cut], done)
        text = logs(client, build)
        assert "--- attempt 2: taking over from worker" in text
        # (the hosts share one engine here: BuildKit may join attempt 2's steps to those the
        # cut-off host still runs, and show their progress to that host's build only)
        assert text.splitlines().count("finished") <= 1 and text.count("Build success") == 1
        # ...and the cut-off host, back on the network, was refused when it wrote again
        wait_until(lambda: "claim lost" in workers[cut].tail(200), 60, what="the cut-off worker to be fenced")
        assert client.get(build_path(build)).json() == done
    finally:
        for process in (*workers, api, s3, redis):
            process.stop()


def _runs(worker: Process, build: dict) -> bool:
    pid = build["worker"].rsplit(":", 1)[1]
    return (
        pid in subprocess.run(["pgrep", "-P", str(worker.pid)], capture_output=True, text=True).stdout.split()
    )


def _ready(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/readyz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
