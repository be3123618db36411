"""A hostile tenant's build reaches nothing of the farm (issue 13, item 1): its RUN step, under
BuildKit and under the classic builder, tries to connect to every address the farm listens on,
to the engine's host, and to a private and a link-local address; every one is refused, at once,
and the build still succeeds; the same addresses answer from the machine itself, so the test can
fail. A public address stays reachable, and the operator's settings (deploy/build-egress:
BUILDFARM_BUILD_EGRESS=none, BUILDFARM_BUILD_EGRESS_ALLOW) close it and open a private one.

The topology is made here and removed at the end; traffic goes only to addresses on the veths
this test creates, and to the machine's own addresses:
- the "farm" host (a network namespace, 10.232.1.2): Redis, S3 (rclone), a registry and the API
  listen on its address, as in production (not 127.0.0.1); the worker runs on the machine itself
  and reaches them over the veth. (The engine pushes over plain HTTP only to a loopback registry,
  so the farm pushes its images to the session's registry; the one on the farm host is what the
  build tries.)
- the "outside" host (10.232.2.2), also given 169.254.169.254 (the cloud metadata address),
  10.99.0.1 (a private address) and 192.88.99.2 (a public one), all answered by one HTTP server;
- the machine itself, the engine's host: the worker's metrics port and a listener on all of its
  addresses, tried at the bridge gateway, at its end of the farm host's veth, and at 192.88.99.1,
  a public address this test gives it (refused although no private range covers it).

The rules are host-wide (one engine serves every farm on this machine): each test puts back the
farm's default settings when it ends."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from common.config import Config
from common.s3 import create_s3, ensure_buckets
from tests import netns
from tests.conftest import (
    BASE_IMAGE,
    BIN,
    ROOT,
    Process,
    api_env,
    free_port,
    process_env,
    start_worker,
    wait_until,
)
from tests.farm import archive_deployment, context_archive, deploy, dockerfile, logs, wait_for_status

# It changes what every build on the shared engine gets: run alone (deploy/local/test).
pytestmark = [pytest.mark.e2e, pytest.mark.engine_wide]

EGRESS = ROOT / "deploy" / "build-egress"
METADATA, PRIVATE, PUBLIC, HOST_PUBLIC = "169.254.169.254", "10.99.0.1", "192.88.99.2", "192.88.99.1"
# Connect timeout of a probe: a dropped (not refused) connection would take this long.
PROBE_TIMEOUT_S = 5
# One line per target: "probe NAME reached|blocked: REASON in N ms" (N from /proc/uptime, 10 ms steps).
PROBE = (
    'probe() { s=$(sed "s/ .*//; s/\\.//" /proc/uptime); '
    f'if err=$(nc -w {PROBE_TIMEOUT_S} "$2" "$3" -e true 2>&1); then r=reached; '
    'else r="blocked: ${err##*: }"; fi; '
    'e=$(sed "s/ .*//; s/\\.//" /proc/uptime); echo "probe $1 $r in $(( (e - s) * 10 )) ms"; }'
)
PROBE_LINE = re.compile(r"probe (\S+) (reached|blocked: .*) in (\d+) ms")


@dataclass
class Farm:
    """The topology: where each target listens, and a client of the API as a hostile tenant."""

    targets: dict[str, tuple[str, int]]
    client: httpx.Client
    env: dict[str, str]


def egress(**settings: str) -> None:
    """Applies the build egress rules with these settings over the session's."""
    env = {**os.environ, **settings}
    done = subprocess.run([str(EGRESS), "apply"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def default_egress():
    """The farm's default rules during the test and after it, whatever the test changed."""
    egress()
    yield egress
    egress()


def answers(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=3):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def farm(logs_dir, tmp_path_factory, docker_client):
    tmp = tmp_path_factory.mktemp("hostile-network")
    with netns.hosts(1, 2, net=232) as (farm_host, outside):
        for address in (METADATA, PRIVATE, PUBLIC):
            outside.add_address(address)
        outside.add_root_address(HOST_PUBLIC)
        # Nothing may leave the machine: each test address must route to the outside host.
        for address in (METADATA, PRIVATE, PUBLIC):
            assert outside.routes_here(address), netns.ip("route", "get", address)
        at = farm_host.address
        ports = {name: free_port() for name in ("redis", "s3", "registry", "api", "metrics", "listener")}
        (tmp / "registry.yml").write_text(
            f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {tmp / 'registry'}\n"
            f"http:\n  addr: {at}:{ports['registry']}\n"
        )
        settings = {
            "BUILDFARM_REDIS_URL": f"redis://{at}:{ports['redis']}/0",
            "BUILDFARM_S3_ENDPOINT": f"{at}:{ports['s3']}",
        }
        env = process_env(**settings)
        in_farm_host = [
            (
                "redis",
                ["redis-server", "--bind", at, "--port", str(ports["redis"]), "--protected-mode", "no"]
                + ["--save", "", "--appendonly", "no"],
                env,
            ),
            (
                "s3",
                [str(BIN / "rclone"), "serve", "s3", "--auth-key", "buildfarm,buildfarm-secret"]
                + ["--addr", f"{at}:{ports['s3']}", str(tmp / "s3")],
                env,
            ),
            ("registry", ["docker-registry", "serve", str(tmp / "registry.yml")], env),
            (
                "api",
                [str(BIN / "gunicorn"), "api.asgi:app", "--worker-class", "api.server.ApiWorker"]
                + ["--workers", "1", "--bind", f"{at}:{ports['api']}"],
                {**api_env(), **settings},
            ),
        ]
        processes = [
            Process(farm_host.command(*args), penv, logs_dir / f"hostile-{name}.log")
            for name, args, penv in in_farm_host
        ]
        # HTTP servers of an empty folder: only a connection matters.
        serve = ["python3", "-m", "http.server", "--directory", str(tmp / "empty")]
        (tmp / "empty").mkdir()
        processes.append(Process(outside.command(*serve, "80"), env, logs_dir / "hostile-outside.log"))
        listener = [*serve, "--bind", "0.0.0.0", str(ports["listener"])]
        processes.append(Process(listener, env, logs_dir / "hostile-listener.log"))
        try:
            api = f"http://{at}:{ports['api']}"
            wait_until(lambda: _ready(f"{api}/readyz"), 30, what="the API on the farm host")
            ensure_buckets(create_s3(Config.from_env(env)), Config.from_env(env))
            token = subprocess.run(
                [str(BIN / "buildfarm"), "token", "create", "--tenant", "hostile", "--name", "tests"],
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            bridge = docker_client.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"]
            targets = {
                "redis": (at, ports["redis"]),
                "s3": (at, ports["s3"]),
                "registry": (at, ports["registry"]),
                "api": (at, ports["api"]),
                "metrics": (bridge, ports["metrics"]),
                "host-gateway": (bridge, ports["listener"]),
                "host-veth": (farm_host.gateway, ports["listener"]),
                "host-public": (HOST_PUBLIC, ports["listener"]),
                "metadata": (METADATA, 80),
                "private": (PRIVATE, 80),
                "public": (PUBLIC, 80),
            }
            auth = {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=f"{api}/api/v1", headers=auth, timeout=30) as client:
                yield Farm(targets, client, settings)
        finally:
            for process in processes:
                process.stop()


@pytest.fixture(params=["buildkit", "classic"])
def builder(request, farm, logs_dir):
    """A worker of that builder on the machine itself, serving its metrics on every address."""
    process = start_worker(
        logs_dir,
        name=f"hostile-{request.param}",
        BUILDFARM_BUILDER=request.param,
        BUILDFARM_METRICS_PORT=str(farm.targets["metrics"][1]),
        **farm.env,
    )
    try:
        wait_until(lambda: "ready for action" in process.tail(), 30, what="the worker to boot")
        wait_until(lambda: answers(*farm.targets["metrics"]), 30, what="the worker's metrics port")
        yield request.param
    finally:
        process.stop()


def probe_build(farm: Farm, names: list[str]) -> dict[str, tuple[str, int]]:
    """Runs a build whose RUN step tries each target; returns name -> (outcome, milliseconds)."""
    calls = "; ".join(f"probe {name} {farm.targets[name][0]} {farm.targets[name][1]}" for name in names)
    deployment = archive_deployment(farm.client, context_archive(dockerfile(f"{PROBE}; {calls}")))
    done = wait_for_status(farm.client, deploy(farm.client, deployment), timeout=180)
    text = logs(farm.client, done)
    assert done["status"] == "success", text
    found = {m[1]: (m[2], int(m[3])) for m in PROBE_LINE.finditer(text)}
    assert found.keys() == set(names), text
    return found


FARM_AND_HOST = ["redis", "s3", "registry", "api", "metrics", "host-gateway", "host-veth", "host-public"]


def test_a_build_reaches_nothing_of_the_farm_nor_private_or_link_local_addresses_only_the_internet(
    farm, builder, default_egress
):
    # Given every target answering from the machine itself
    refused = [*FARM_AND_HOST, "metadata", "private"]
    assert {name: answers(*farm.targets[name]) for name in [*refused, "public"]} == dict.fromkeys(
        [*refused, "public"], True
    )

    # When a tenant's build tries each of them
    found = probe_build(farm, [*refused, "public"])

    # Then each farm, host, private and link-local address is refused at once, the public one answers
    for name in refused:
        outcome, ms = found[name]
        assert outcome == "blocked: Connection refused", (name, found)
        assert ms < 2000, f"{name}: a refused connect took {ms} ms ({builder})"
    assert found["public"][0] == "reached", found
    print(f"{builder}: refused connects took {sorted(found[name][1] for name in refused)} ms")
    # ...while the same addresses still answer from the machine
    assert all(answers(*farm.targets[name]) for name in refused)


def test_egress_none_refuses_the_internet_and_the_allow_list_opens_a_private_address(
    farm, builder, default_egress
):
    # Given builds cut off from the internet, with one private address opened on purpose
    default_egress(BUILDFARM_BUILD_EGRESS="none", BUILDFARM_BUILD_EGRESS_ALLOW=f"{PRIVATE}/32")

    # When a build tries the public, the allowed and other addresses
    found = probe_build(farm, ["public", "private", "metadata", "redis", "host-gateway"])

    # Then only the allowed address answers
    assert found["private"][0] == "reached", found
    for name in ("public", "metadata", "redis", "host-gateway"):
        assert found[name][0] == "blocked: Connection refused", (name, found)


def test_the_local_farm_puts_the_rules_in_place_and_reapplying_them_changes_nothing(default_egress):
    # Given a machine whose builds are not filtered: every hook to the farm's chain removed
    for family in ("iptables", "ip6tables"):
        for hook in _hooks(family):
            subprocess.run([family, "-w", "-D", *hook.split()[1:]], check=True)
    assert subprocess.run([str(EGRESS), "check"], capture_output=True).returncode == 1

    # When the farm's services come up (as `make run` and `make test` bring them up)
    up = subprocess.run([str(ROOT / "deploy" / "local" / "services"), "up"], capture_output=True, text=True)

    # Then builds are filtered again
    assert up.returncode == 0, up.stderr
    assert "egress    builds filtered" in up.stdout
    check = subprocess.run([str(EGRESS), "check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    # ...and applying again, twice, leaves one hook per chain and the same rules
    before = _filter_rules()
    default_egress()
    default_egress()
    assert _filter_rules() == before
    for family in ("iptables", "ip6tables"):
        assert len(_hooks(family)) == 2, _hooks(family)


@pytest.fixture
def short_tmp_path():
    """A folder of the test with a short path: the unix sockets an engine makes in its exec root
    must stay under 108 bytes, which a pytest-xdist worker's tmp_path
    (…/popen-gw0/test_an_engine_started_through0/exec/containerd/…) passes."""
    path = Path(tempfile.mkdtemp(prefix="dind-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_an_engine_started_through_build_egress_in_its_own_network_namespace_filters_its_builds(
    short_tmp_path, logs_dir, docker_client
):
    # Given an engine started as the compose and k8s dind containers start theirs (deploy/build-egress
    # engine dockerd …, in a network namespace of its own; the stand-in for the image's entrypoint
    # execs dockerd), the worker's metrics port listening in that namespace as in the k8s pod, a
    # service one hop away, as Redis is on the compose network, and the engine's resolver on that
    # same neighbour (its resolv.conf, in a mount namespace of the engine's own)
    entrypoint, empty = short_tmp_path / "bin" / "dockerd-entrypoint.sh", short_tmp_path / "empty"
    entrypoint.parent.mkdir()
    entrypoint.write_text('#!/bin/sh\nexec "$@"\n')
    entrypoint.chmod(0o755)
    empty.mkdir()
    host = f"unix://{short_tmp_path}/docker.sock"
    env = {**os.environ, "PATH": f"{entrypoint.parent}:{os.environ['PATH']}", "DOCKER_HOST": host}
    with netns.hosts(3, net=232) as (pod,):
        inside = ["nsenter", f"--net=/run/netns/{pod.netns}"]
        resolv = short_tmp_path / "resolv.conf"
        resolv.write_text(f"nameserver {pod.gateway}\n")
        own_resolv = [
            "unshare",
            "-m",
            "sh",
            "-c",
            'mount --bind "$0" /etc/resolv.conf && exec "$@"',
            str(resolv),
        ]
        engine = Process(
            [
                *own_resolv,
                *inside,
                "sh",
                str(EGRESS),
                "engine",
                "dockerd",
                "--data-root",
                str(short_tmp_path / "data"),
            ]
            + ["--exec-root", str(short_tmp_path / "exec"), "--pidfile", str(short_tmp_path / "dockerd.pid")]
            + ["-H", host, "--storage-driver", "vfs"],
            env,
            logs_dir / "dind-engine.log",
        )
        serve = ["python3", "-m", "http.server", "--directory", str(empty), "--bind"]
        metrics = Process([*inside, *serve, "0.0.0.0", "18801"], env, logs_dir / "dind-metrics.log")
        neighbour = Process([*serve, pod.gateway, "18802"], env, logs_dir / "dind-neighbour.log")
        resolver = Process([*serve, pod.gateway, "53"], env, logs_dir / "dind-resolver.log")
        try:
            # When the engine is healthy (the compose healthcheck and the k8s startupProbe)
            healthy = [*inside, "sh", "-c", f"docker version >/dev/null && sh {EGRESS} check >/dev/null"]
            wait_until(
                lambda: subprocess.run(healthy, env=env, capture_output=True).returncode == 0,
                60,
                what="a healthy engine",
            )
            image = b"".join(docker_client.get_image(BASE_IMAGE))
            subprocess.run(["docker", "load"], input=image, env=env, check=True, capture_output=True)
            # ...and a build on it tries the pod's own address, the neighbour, and its resolver
            (short_tmp_path / "ctx").mkdir()
            targets = {
                "pod": (pod.address, 18801),
                "neighbour": (pod.gateway, 18802),
                "dns": (pod.gateway, 53),
            }
            calls = "; ".join(f"probe {name} {address} {port}" for name, (address, port) in targets.items())
            (short_tmp_path / "ctx" / "Dockerfile").write_text(f"FROM {BASE_IMAGE}\nRUN {PROBE}; {calls}\n")
            build = subprocess.run(
                [Config.docker_cli, "build", "--no-cache", "--progress=plain", str(short_tmp_path / "ctx")],
                env={**env, "DOCKER_BUILDKIT": "1"},
                capture_output=True,
                text=True,
            )

            # Then the build succeeds; the pod and the neighbour are refused, while they answer in
            # the namespace, and only port 53 of the resolver answers
            assert build.returncode == 0, build.stderr
            found = {m[1]: m[2] for m in PROBE_LINE.finditer(build.stderr)}
            refused = "blocked: Connection refused"
            assert found == {"pod": refused, "neighbour": refused, "dns": "reached"}, build.stderr
            probe = [*inside, "busybox", "nc", "-w", "3"]
            for address, port in targets.values():
                subprocess.run([*probe, address, str(port), "-e", "true"], check=True)
        finally:
            for process in (metrics, neighbour, resolver, engine):
                process.stop(timeout=30)
            # Its containerd runs in a session of its own; an engine that did not exit cleanly
            # leaves it, and its data root mounted.
            containerd = short_tmp_path / "exec" / "containerd" / "containerd.pid"
            if containerd.exists():
                subprocess.run(["kill", "-KILL", containerd.read_text().strip()], capture_output=True)
            subprocess.run(["umount", "-R", str(short_tmp_path / "data")], capture_output=True)


def _hooks(family: str) -> list[str]:
    return [rule for rule in _rules(family) if rule.endswith("-j BUILDFARM-BUILDS")]


def _rules(family: str) -> list[str]:
    listed = subprocess.run([family, "-w", "-S"], capture_output=True, text=True, check=True)
    return listed.stdout.splitlines()


def _filter_rules() -> list[str]:
    return [rule for family in ("iptables", "ip6tables") for rule in _rules(family) if "BUILDFARM" in rule]


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
