"""The deployment files (deploy/docker, deploy/compose.yaml, deploy/k8s) keep their promises.

No service is needed: the files are parsed and checked against the Kubernetes and compose-spec
schemas (tests/manifest_schemas.py), against each other, against the farm's own settings
(common/config.py) and against Dramatiq's code, so that a renamed setting, a worker that cannot
reach its engine, or a KEDA trigger on a key Dramatiq no longer writes fails here rather than in
a cluster.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import dramatiq.brokers.redis as dramatiq_redis
import pytest
import yaml
from dramatiq.brokers.redis import RedisBroker

from common.broker import build_message, create_broker
from common.config import Config
from tests import manifest_schemas as schemas

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
API_DOCKERFILE = DEPLOY / "docker" / "api.Dockerfile"
WORKER_DOCKERFILE = DEPLOY / "docker" / "worker.Dockerfile"

# Carried by the worker image for its pod's engine container (deploy/k8s/worker.yaml), not a package.
WORKER_IMAGE_FILES = {"deploy/build-egress"}
# Read by the worker image's command line, not by common/config.py.
WORKER_COMMAND_SETTINGS = {"BUILDFARM_WORKER_PROCESSES", "BUILDFARM_WORKER_THREADS"}
# What a container needs so that no setting falls back to a 127.0.0.1 default.
REACH_SETTINGS = {
    "BUILDFARM_REDIS_URL",
    "BUILDFARM_S3_ENDPOINT",
    "BUILDFARM_S3_ACCESS_KEY",
    "BUILDFARM_S3_SECRET_KEY",
    "BUILDFARM_REGISTRY",
}


# --- helpers ------------------------------------------------------------------------------


def config_env_names() -> set[str]:
    """The environment variables common/config.py reads (same mapping as Config.from_env)."""
    return {
        "DOCKER_HOST" if f.name == "docker_host" else f"BUILDFARM_{f.name.upper()}"
        for f in dataclasses.fields(Config)
    }


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {k: str(v) for k, v in env.items() if k != "<<"}


def k8s_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc is not None:
                doc["__file__"] = path.name
                docs.append(doc)
    return docs


def k8s_resources() -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d["kind"] != "Kustomization"]


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize's secretGenerator reads them (# starts a comment)."""
    lines = [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def k8s_secrets() -> dict[str, dict[str, str]]:
    """The Secrets kustomization.yaml makes, name -> {key: example value}: from the operator's
    secrets/*.env files, whose keys the committed *.env.example files give."""
    secrets = {}
    for generator in kustomization()["secretGenerator"]:
        keys: dict[str, str] = {}
        for name in generator["envs"]:
            keys.update(env_file(K8S / f"{name}.example"))
        secrets[generator["name"]] = keys
    return secrets


def generated_secret_resources() -> list[dict[str, Any]]:
    namespace = kustomization()["namespace"]
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": namespace},
            "type": "Opaque",
            "stringData": {key: value or "x" for key, value in keys.items()},
        }
        for name, keys in k8s_secrets().items()
    ]


def compose_text() -> str:
    return COMPOSE_FILE.read_text()


def compose_as_run(env: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as compose reads it, every variable it names set (or `env`)."""
    given = {name: f"sample-{name.lower()}" for name in schemas.compose_variables(compose_text())}
    return yaml.safe_load(schemas.interpolate(compose_text(), given if env is None else env))


def quantity(value: str | int) -> float:
    """A k8s quantity ("10Gi", "500m") or a compose byte value ("10g") as a number."""
    text = str(value)
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 1e3, "M": 1e6, "G": 1e9, "m": 1e-3}
    units |= {"b": 1, "kb": 2**10, "mb": 2**20, "gb": 2**30, "g": 2**30}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([A-Za-z]*)", text)
    assert match, f"unreadable quantity {text!r}"
    number, unit = match.groups()
    return float(number) * (units[unit] if unit else 1)


def k8s_one(kind: str, name: str) -> dict[str, Any]:
    found = [d for d in k8s_resources() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name!r} in deploy/k8s, found {len(found)}"
    return found[0]


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def pod_spec(workload: dict[str, Any]) -> dict[str, Any]:
    return workload["spec"]["template"]["spec"]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(workload)
    found = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == name]
    assert len(found) == 1, f"{workload['metadata']['name']} has no single container {name!r}"
    return found[0]


def container_env(workload: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    """Every variable a container gets: its ConfigMap envFrom entries, then its env list."""
    env: dict[str, Any] = {}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s_one("ConfigMap", source["configMapRef"]["name"])["data"])
    for item in c.get("env", []):
        env[item["name"]] = item.get("value", item.get("valueFrom"))
    return env


def seconds(duration: str | int) -> float:
    """A compose duration ("90s", "1m30s", "2m") in seconds."""
    if isinstance(duration, int | float):
        return float(duration)
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|m|s|us)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, f"unreadable duration {duration!r}"
    scale = {"h": 3600, "m": 60, "s": 1, "ms": 1e-3, "us": 1e-6}
    return sum(float(n) * scale[u] for n, u in parts)


def dockerfile(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with continuation lines joined and comments dropped."""
    instructions, buffer = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") or (not buffer and not line.strip()):
            continue
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        word, _, rest = buffer.strip().partition(" ")
        instructions.append((word.upper(), rest.strip()))
        buffer = ""
    assert not buffer, f"{path.name} ends inside a continuation line"
    return instructions


def final_stage(instructions: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    return instructions[last_from:]


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env = {}
    for word, rest in stage:
        if word == "ENV":
            for item in shlex.split(rest):
                name, _, value = item.partition("=")
                env[name] = value
    return env


def image_user(stage: list[tuple[str, str]]) -> tuple[str, str]:
    users = [rest for word, rest in stage if word == "USER"]
    assert users, "the final stage sets no USER: the image would run as root"
    uid, _, gid = users[-1].partition(":")
    return uid, gid


def image_cmd(stage: list[tuple[str, str]]) -> list[str]:
    cmds = [rest for word, rest in stage if word == "CMD"]
    assert cmds, "the final stage has no CMD"
    return json.loads(cmds[-1])


def copied_sources(instructions: list[tuple[str, str]]) -> set[str]:
    sources = set()
    for word, rest in instructions:
        if word == "COPY" and "--from" not in rest:
            *srcs, _dest = shlex.split(rest)
            sources.update(s.rstrip("/") for s in srcs)
    return sources


def stage_named(instructions: list[tuple[str, str]], name: str) -> list[tuple[str, str]]:
    """The instructions of the build stage `FROM … AS name`, up to the next FROM."""
    starts = [i for i, (word, _) in enumerate(instructions) if word == "FROM"] + [len(instructions)]
    for start, end in zip(starts, starts[1:], strict=False):
        if instructions[start][1].lower().endswith(f" as {name.lower()}"):
            return instructions[start:end]
    raise AssertionError(f"no build stage named {name!r}")


def local_engine_buildkit_env() -> dict[str, str]:
    """The BUILDKIT_* variables deploy/local/services starts its Docker engine with."""
    script = (DEPLOY / "local" / "services").read_text()
    (line,) = [line for line in script.splitlines() if "spawn docker " in line]
    return dict(re.findall(r"\b(BUILDKIT_\w+)=(\S+)", line))


def unix_socket(host: str) -> Path:
    assert host.startswith("unix://"), f"{host!r} is not a unix socket"
    return Path(host.removeprefix("unix://"))


def dockerd_hosts(args: list[str]) -> list[str]:
    return [a.split("=", 1)[1] for a in args if a.startswith("--host=")] + [
        args[i + 1] for i, a in enumerate(args) if a in ("-H", "--host")
    ]


def dockerd_group(args: list[str]) -> str | None:
    for i, a in enumerate(args):
        if a.startswith("--group="):
            return a.split("=", 1)[1]
        if a in ("-G", "--group"):
            return args[i + 1]
    return None


def dramatiq_key_of_unfinished_builds(monkeypatch: pytest.MonkeyPatch, config: Config) -> str:
    """The Redis key that counts the queue's unfinished messages (waiting, or fetched by a worker
    and not yet acknowledged), derived from the code that writes it: the broker the farm really
    uses (common.broker), the arguments its enqueue hands to Dramatiq's dispatch script, and the
    key formulas in that script (dramatiq/brokers/redis/dispatch.lua)."""
    broker = create_broker(config)
    calls = []
    monkeypatch.setitem(broker.scripts, "dispatch", lambda args, keys: calls.append((args, keys)))
    monkeypatch.setattr(RedisBroker, "_max_unpack_size_val", 1000)
    broker.enqueue(build_message(config, "0123456789abcdef"))
    (args, keys), *_ = calls
    assert args[0] == "enqueue"
    namespace, queue = keys[0], args[2]
    assert queue == config.queue_name, "the farm enqueues builds on another queue than the workers read"

    lua = (Path(dramatiq_redis.__file__).parent / "redis" / "dispatch.lua").read_text()
    full = re.search(r'local queue_full_name = namespace \.\. "([^"]*)" \.\. queue_name\n', lua)
    msgs = re.search(r'local queue_messages = queue_full_name \.\. "([^"]*)"\n', lua)
    assert full and msgs, "dispatch.lua no longer names the queue keys as this test expects"
    # The queue's list gets each new message id; the hash keeps the message until its ack.
    assert re.search(r'redis\.call\("hset", queue_messages, message_id, message_data\)', lua)
    assert re.search(r'redis\.call\("rpush", queue_full_name, message_id\)', lua)
    assert re.search(r'redis\.call\("lpop", queue_full_name\)', lua)
    assert re.search(r'redis\.call\("hdel", queue_messages, message_id\)', lua)
    assert lua.count('"hdel", queue_messages') == 2, "dispatch.lua drops messages elsewhere than ack/nack"
    return f"{namespace}{full.group(1)}{queue}{msgs.group(1)}"


# --- the images -----------------------------------------------------------------------------


def test_the_api_image_serves_the_asgi_app_with_the_api_worker_class_as_a_non_root_user():
    stage = final_stage(dockerfile(API_DOCKERFILE))
    uid, gid = image_user(stage)
    assert uid not in ("", "0", "root") and gid not in ("0", "root")
    cmd = image_cmd(stage)
    assert cmd[:2] == ["gunicorn", "api.asgi:app"]
    assert cmd[cmd.index("--worker-class") + 1] == "api.server.ApiWorker"
    assert cmd[cmd.index("--bind") + 1] == "0.0.0.0:8000"
    # The entry points exist where the command line says.
    assert re.search(r"^app = ", (ROOT / "api" / "asgi.py").read_text(), re.M)
    assert re.search(r"^class ApiWorker\(", (ROOT / "api" / "server.py").read_text(), re.M)


def test_the_worker_image_runs_the_dramatiq_actors_on_the_builds_queue_as_a_non_root_user():
    stage = final_stage(dockerfile(WORKER_DOCKERFILE))
    uid, gid = image_user(stage)
    assert uid not in ("", "0", "root") and gid not in ("0", "root")
    env = image_env(stage)
    assert env["dramatiq_worker_timeout"] == "100"
    cmd = image_cmd(stage)
    assert cmd[:2] == ["sh", "-c"], "the worker command needs a shell to read its settings"
    script = cmd[2]
    exec_line = shlex.split(script.split("exec ", 1)[1])
    assert exec_line[:2] == ["dramatiq", "worker.actors"]
    assert exec_line[exec_line.index("--queues") + 1] == f"${{BUILDFARM_QUEUE_NAME:-{Config.queue_name}}}"
    assert exec_line[exec_line.index("--processes") + 1] == "$BUILDFARM_WORKER_PROCESSES"
    assert exec_line[exec_line.index("--threads") + 1] == "$BUILDFARM_WORKER_THREADS"
    # A process prefetches no more builds than it has threads.
    assert 'dramatiq_queue_prefetch="${dramatiq_queue_prefetch:-$BUILDFARM_WORKER_THREADS}"' in script
    assert {"BUILDFARM_WORKER_PROCESSES", "BUILDFARM_WORKER_THREADS"} <= env.keys()
    assert re.search(
        r"^@dramatiq\.actor\(.*queue_name=config\.queue_name",
        (ROOT / "worker" / "actors.py").read_text(),
        re.M,
    )


def test_the_worker_image_carries_a_docker_cli_that_drives_buildkit_where_the_worker_runs_it():
    instructions = dockerfile(WORKER_DOCKERFILE)
    stage = final_stage(instructions)
    cli = image_env(stage).get("BUILDFARM_DOCKER_CLI", Config.docker_cli)
    copies = [shlex.split(rest) for word, rest in stage if word == "COPY" and rest.startswith("--from=")]
    found = [c for c in copies if c[-1] == cli]
    assert len(found) == 1, f"nothing in the worker image at {cli}, where the worker runs the docker CLI"
    source_stage, source = found[0][0].removeprefix("--from="), found[0][1]
    # Debian's docker.io CLI builds with BuildKit by itself; a newer CLI needs the buildx plugin.
    runs = " ".join(rest for word, rest in stage_named(instructions, source_stage) if word == "RUN")
    assert "apt-get download docker.io" in runs
    assert source.endswith("/usr/bin/docker"), f"{source} is not the docker.io package's CLI"


def test_the_images_install_the_project_from_pyproject_with_the_packages_they_run():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    shipped = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    packages = {name for name in shipped if any(fnmatch(name, pat) for pat in patterns)}
    api, worker = dockerfile(API_DOCKERFILE), dockerfile(WORKER_DOCKERFILE)
    for instructions, needs in ((api, {"api", "common", "cli"}), (worker, {"worker", "common", "cli"})):
        sources = copied_sources(instructions) - (WORKER_IMAGE_FILES if instructions is worker else set())
        assert "pyproject.toml" in sources
        assert needs <= sources, f"missing {needs - sources}"
        assert sources <= packages | {"pyproject.toml"}, f"copies what pyproject does not ship: {sources}"
        assert any(w == "RUN" and "pip install --no-deps ." in rest for w, rest in instructions)
        assert any(w == "COPY" and rest.startswith("--from=build /opt/buildfarm") for w, rest in instructions)
    # Together the two images carry every package pyproject ships: a new one must be placed.
    assert packages <= copied_sources(api) | copied_sources(worker)
    assert copied_sources(worker) >= WORKER_IMAGE_FILES
    # The API never carries the worker, nor the worker the API.
    assert "worker" not in copied_sources(api) and "api" not in copied_sources(worker)


def test_the_build_context_sends_the_sources_and_never_the_local_state():
    for path in (API_DOCKERFILE, WORKER_DOCKERFILE):
        ignore = Path(f"{path}.dockerignore")
        rules = [r.strip() for r in ignore.read_text().splitlines() if r.strip() and not r.startswith("#")]
        assert rules[0] == "*", "the ignore file is an allow-list"
        allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
        assert copied_sources(dockerfile(path)) <= allowed
        assert not allowed & {".venv", ".local", ".git", "tests"}


# --- docker compose ---------------------------------------------------------------------------


def test_compose_runs_redis_minio_a_registry_a_dind_engine_the_api_and_workers():
    services = compose()["services"]
    assert {"redis", "minio", "registry", "dind", "api", "worker"} <= services.keys()
    assert services["dind"].get("privileged") is True
    for name in ("api", "worker"):
        build = services[name]["build"]
        assert (COMPOSE_FILE.parent / build["context"]).resolve() == ROOT
        assert (ROOT / build["dockerfile"]).resolve() == (DEPLOY / "docker" / f"{name}.Dockerfile")


def one_shot_services(services: dict[str, Any]) -> set[str]:
    """Services that others wait for to end (service_completed_successfully): they have no
    health to check."""
    return {
        dependency
        for service in services.values()
        for dependency, condition in (service.get("depends_on") or {}).items()
        if isinstance(condition, dict) and condition.get("condition") == "service_completed_successfully"
    }


def test_every_compose_service_has_a_health_check():
    services = compose()["services"]
    for name, service in services.items():
        if name in one_shot_services(services):
            assert service.get("restart") == "no", f"{name} runs once: it must not be restarted"
            continue
        check = service.get("healthcheck")
        assert check and not check.get("disable") and check.get("test"), f"{name} has no health check"
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
    api_check = " ".join(compose()["services"]["api"]["healthcheck"]["test"])
    assert "/readyz" in api_check


def test_the_compose_worker_scales_with_no_fixed_name_or_host_port():
    worker = compose()["services"]["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert not worker.get("ports"), "a published port clashes as soon as there are two workers"
    assert worker.get("network_mode") != "host"
    assert "replicas" not in worker.get("deploy", {}), "--scale sets the count"


def test_compose_redis_keeps_an_append_only_file_on_a_volume():
    redis = compose()["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(v.split(":")[1] == "/data" for v in redis["volumes"])


def test_the_compose_workers_reach_the_dind_engine_only_through_a_shared_socket():
    services = compose()["services"]
    dind, worker = services["dind"], services["worker"]
    hosts = dockerd_hosts(dind["command"])
    assert dind["command"][0] == "dockerd", "without it the dind entrypoint adds a TCP listener"
    assert hosts and all(h.startswith("unix://") for h in hosts), "no TCP listener on the engine"
    socket = unix_socket(compose_env(worker)["DOCKER_HOST"])
    assert f"unix://{socket}" in hosts
    mounts = {m.split(":")[1]: m.split(":")[0] for m in dind["volumes"]}
    worker_mounts = {m.split(":")[1]: m.split(":")[0] for m in worker["volumes"]}
    assert mounts[str(socket.parent)] == worker_mounts[str(socket.parent)], "the socket is not shared"
    _, gid = image_user(final_stage(dockerfile(WORKER_DOCKERFILE)))
    assert dockerd_group(dind["command"]) == gid, "the non-root worker could not open the socket"
    assert worker["depends_on"]["dind"]["condition"] == "service_healthy"


def test_a_stopping_compose_worker_gets_longer_than_its_build_grace_period():
    worker = compose()["services"]["worker"]
    grace = float(compose_env(worker).get("BUILDFARM_WORKER_GRACE_S", Config.worker_grace_s))
    assert seconds(worker["stop_grace_period"]) > grace


def test_compose_containers_name_only_real_settings_and_never_fall_back_to_localhost():
    known = config_env_names() | WORKER_COMMAND_SETTINGS
    services = compose()["services"]
    for name in ("api", "worker"):
        env = compose_env(services[name])
        unknown = {k for k in env if k.startswith("BUILDFARM_")} - known
        assert not unknown, f"{name} sets settings common/config.py does not read: {unknown}"
        assert env.keys() >= REACH_SETTINGS, f"{name} misses {REACH_SETTINGS - env.keys()}"
        assert "127.0.0.1" not in env["BUILDFARM_REDIS_URL"] + env["BUILDFARM_S3_ENDPOINT"]
    assert "DOCKER_HOST" in compose_env(services["worker"])


def test_compose_gives_the_api_and_workers_the_secrets_key_from_the_environment_only():
    services = compose()["services"]
    for name in ("api", "worker"):
        assert compose_env(services[name])["BUILDFARM_SECRETS_KEY"] == "${BUILDFARM_SECRETS_KEY:-}", name


# --- Kubernetes -----------------------------------------------------------------------------


def test_the_k8s_manifests_parse_and_hold_every_kind_the_farm_needs():
    resources = k8s_resources()
    kinds = {d["kind"] for d in resources}
    assert {"Namespace", "ConfigMap", "StatefulSet", "Deployment", "Service"} <= kinds
    secrets = {"buildfarm-redis", "buildfarm-s3", "buildfarm-registry", "buildfarm-secrets-key"}
    assert secrets <= k8s_secrets().keys()
    assert {"ScaledObject", "TriggerAuthentication"} <= kinds
    for d in resources:
        assert d.get("apiVersion") and d["metadata"].get("name"), d
    names = {(d["kind"], d["metadata"]["name"]) for d in resources}
    assert len(names) == len(resources), "two resources share a kind and a name"
    for kind, name in [("StatefulSet", "redis"), ("StatefulSet", "minio"), ("StatefulSet", "registry")]:
        assert (kind, name) in names and ("Service", name) in names
    for name in ("buildfarm-api", "buildfarm-worker"):
        assert ("Deployment", name) in names


def test_kustomize_applies_every_manifest_in_one_namespace():
    kust = kustomization()
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kust["resources"]) == files
    namespace = kust["namespace"]
    for d in k8s_resources():
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == namespace, d["metadata"]["name"]
    assert k8s_one("Namespace", namespace)


def test_k8s_redis_is_a_statefulset_with_aof_on_a_persistent_volume():
    redis = k8s_one("StatefulSet", "redis")
    c = container(redis, "redis")
    args = c["command"] + c["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    claims = {t["metadata"]["name"] for t in redis["spec"]["volumeClaimTemplates"]}
    assert any(m["name"] in claims and m["mountPath"] == "/data" for m in c["volumeMounts"])


def test_the_k8s_api_is_live_on_healthz_and_ready_on_readyz_behind_its_service():
    api = k8s_one("Deployment", "buildfarm-api")
    c = container(api, "api")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert 8000 in ports.values()
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = c[probe]["httpGet"]
        assert get["path"] == path
        assert ports.get(get["port"], get["port"]) == 8000
    service = k8s_one("Service", "buildfarm-api")
    labels = api["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    target = service["spec"]["ports"][0]["targetPort"]
    assert ports.get(target, target) == 8000
    security = {**pod_spec(api).get("securityContext", {}), **c.get("securityContext", {})}
    assert security["runAsNonRoot"] is True and security["runAsUser"] != 0


def test_each_k8s_worker_pod_has_a_privileged_dind_sidecar_on_a_shared_socket():
    worker = k8s_one("Deployment", "buildfarm-worker")
    spec = pod_spec(worker)
    dind, w = container(worker, "dind"), container(worker, "worker")
    assert dind["image"].startswith("docker:") and dind["image"].endswith("dind")
    assert dind["securityContext"]["privileged"] is True
    # A native sidecar: started before the worker, stopped after it.
    assert dind in spec.get("initContainers", []) and dind["restartPolicy"] == "Always"
    assert dind.get("startupProbe"), "the worker would start before its engine answers"
    # The engine's command line, as the image's entrypoint gets it (deploy/build-egress hands over).
    args = dind["args"]
    assert args[0] == "dockerd", "without it the dind entrypoint adds a TCP listener"
    hosts = dockerd_hosts(args)
    assert hosts and all(h.startswith("unix://") for h in hosts), "no TCP listener on the engine"
    socket = unix_socket(container_env(worker, w)["DOCKER_HOST"])
    assert f"unix://{socket}" in hosts
    dind_mounts = {m["mountPath"]: m["name"] for m in dind["volumeMounts"]}
    worker_mounts = {m["mountPath"]: m["name"] for m in w["volumeMounts"]}
    shared = dind_mounts[str(socket.parent)]
    assert worker_mounts[str(socket.parent)] == shared
    assert "emptyDir" in next(v for v in spec["volumes"] if v["name"] == shared)
    assert "/var/lib/docker" in dind_mounts, "the engine's store must not be the container's overlay"
    # The worker itself is not privileged and not root, and may open the socket.
    security = w["securityContext"]
    assert not security.get("privileged") and security["runAsNonRoot"] is True
    assert dockerd_group(args) == str(security["runAsGroup"])
    _, gid = image_user(final_stage(dockerfile(WORKER_DOCKERFILE)))
    assert str(security["runAsGroup"]) == gid


def test_the_dind_engines_set_buildkits_step_log_limits_as_the_local_engine_does():
    # BuildKit clips a step's output at 1 MiB (and 100 KiB/s) unless its engine's environment
    # says otherwise: the farm's own log cap must be the size that applies, and the speed limit
    # is raised but kept (see deploy/local/services).
    limits = local_engine_buildkit_env()
    assert limits.keys() == {"BUILDKIT_STEP_LOG_MAX_SIZE", "BUILDKIT_STEP_LOG_MAX_SPEED"}
    # The engine's BuildKit reads a 32-bit number, and -1 as a limit rather than as none.
    assert Config.log_max_bytes < int(limits["BUILDKIT_STEP_LOG_MAX_SIZE"]) < 2**31
    assert 100 * 1024 < int(limits["BUILDKIT_STEP_LOG_MAX_SPEED"]) < 2**31
    worker = k8s_one("Deployment", "buildfarm-worker")
    engines = {
        "compose": compose_env(compose()["services"]["dind"]),
        "k8s": container_env(worker, container(worker, "dind")),
    }
    for where, env in engines.items():
        assert {name: env.get(name) for name in limits} == limits, f"the {where} dind engine clips step logs"


def test_a_stopping_k8s_worker_gets_longer_than_its_build_grace_period():
    worker = k8s_one("Deployment", "buildfarm-worker")
    env = container_env(worker, container(worker, "worker"))
    grace = float(env.get("BUILDFARM_WORKER_GRACE_S", Config.worker_grace_s))
    assert pod_spec(worker)["terminationGracePeriodSeconds"] > grace


def test_k8s_containers_name_only_real_settings_and_never_fall_back_to_localhost():
    known = config_env_names() | WORKER_COMMAND_SETTINGS
    for name, cname in (("buildfarm-api", "api"), ("buildfarm-worker", "worker")):
        workload = k8s_one("Deployment", name)
        env = container_env(workload, container(workload, cname))
        unknown = {k for k in env if k.startswith("BUILDFARM_")} - known
        assert not unknown, f"{name} sets settings common/config.py does not read: {unknown}"
        assert env.keys() >= REACH_SETTINGS, f"{name} misses {REACH_SETTINGS - env.keys()}"
        assert "127.0.0.1" not in str(env["BUILDFARM_REDIS_URL"]) + str(env["BUILDFARM_S3_ENDPOINT"])
    unknown = {k for k in k8s_one("ConfigMap", "buildfarm-config")["data"] if k not in known}
    assert not unknown, f"the ConfigMap holds settings nothing reads: {unknown}"


def test_k8s_references_to_secrets_config_and_env_variables_all_resolve():
    secrets = k8s_secrets()
    workloads = [d for d in k8s_resources() if d["kind"] in ("Deployment", "StatefulSet")]
    for workload in workloads:
        spec = pod_spec(workload)
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            defined: list[str] = []
            for item in c.get("env", []):
                ref = (item.get("valueFrom") or {}).get("secretKeyRef")
                if ref:
                    assert ref["key"] in secrets.get(ref["name"], {}), f"{c['name']}: no secret {ref}"
                # Kubernetes expands $(VAR) only from variables defined earlier in the list.
                for var in re.findall(r"\$\((\w+)\)", str(item.get("value", ""))):
                    assert var in defined, f"{c['name']}: {item['name']} uses $({var}) before it is set"
                defined.append(item["name"])
            for arg in c.get("command", []) + c.get("args", []):
                for var in re.findall(r"\$\((\w+)\)", arg):
                    assert var in defined, f"{c['name']}: argument uses $({var}), which is not set"
            for source in c.get("envFrom", []):
                if "configMapRef" in source:
                    k8s_one("ConfigMap", source["configMapRef"]["name"])
                if "secretRef" in source:
                    assert source["secretRef"]["name"] in secrets
    auth = k8s_one("TriggerAuthentication", "buildfarm-redis")
    for ref in auth["spec"]["secretTargetRef"]:
        assert ref["key"] in secrets[ref["name"]]


def test_every_k8s_service_selects_a_workload_and_targets_a_port_it_opens():
    workloads = [d for d in k8s_resources() if d["kind"] in ("Deployment", "StatefulSet")]
    for service in (d for d in k8s_resources() if d["kind"] == "Service"):
        selector = service["spec"]["selector"]
        matches = [
            w for w in workloads if selector.items() <= w["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert len(matches) == 1, f"Service {service['metadata']['name']} selects {len(matches)} workloads"
        opened = {
            key
            for c in pod_spec(matches[0])["containers"]
            for p in c.get("ports", [])
            for key in (p.get("name"), p["containerPort"])
        }
        for port in service["spec"]["ports"]:
            assert port.get("targetPort", port["port"]) in opened, service["metadata"]["name"]


def test_the_worker_scales_on_the_dramatiq_queue_length(monkeypatch):
    config = Config.from_env(k8s_one("ConfigMap", "buildfarm-config")["data"])
    key = dramatiq_key_of_unfinished_builds(monkeypatch, config)
    assert key == "dramatiq:builds.msgs"  # what the docs and the comments name
    scaled = k8s_one("ScaledObject", "buildfarm-worker")
    target = scaled["spec"]["scaleTargetRef"]
    assert target.get("kind", "Deployment") == "Deployment"
    k8s_one("Deployment", target["name"])
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "redis"
    # KEDA's CRD types every trigger metadata value as a string: a bare 4 is refused on apply.
    assert all(isinstance(v, str) for v in trigger["metadata"].values()), trigger["metadata"]
    assert trigger["metadata"]["listName"] == key
    # KEDA runs in its own namespace: the trigger must name the Redis Service fully.
    host, _, port = trigger["metadata"]["address"].partition(":")
    service = k8s_one("Service", "redis")
    assert host in (
        f"redis.{kustomization()['namespace']}.svc",
        f"redis.{kustomization()['namespace']}.svc.cluster.local",
    )
    assert int(port) in [p["port"] for p in service["spec"]["ports"]]
    api = k8s_one("Deployment", "buildfarm-api")
    env = {k: v for k, v in container_env(api, container(api, "api")).items() if isinstance(v, str)}
    queue_url = Config.from_env(env).queue_redis_url
    assert queue_url.endswith(f"@redis:{port}/{trigger['metadata'].get('databaseIndex', '0')}")
    assert k8s_one("TriggerAuthentication", trigger["authenticationRef"]["name"])


def test_the_keda_target_per_pod_is_the_builds_one_worker_pod_runs_at_once():
    worker = k8s_one("Deployment", "buildfarm-worker")
    env = container_env(worker, container(worker, "worker"))
    per_pod = int(env["BUILDFARM_WORKER_PROCESSES"]) * int(env["BUILDFARM_WORKER_THREADS"])
    spec = k8s_one("ScaledObject", "buildfarm-worker")["spec"]
    assert int(spec["triggers"][0]["metadata"]["listLength"]) == per_pod
    # Worker processes also run the reaper and the archive retries: never scale to zero.
    assert spec["minReplicaCount"] >= 1
    assert spec["maxReplicaCount"] >= spec["minReplicaCount"]


def test_k8s_gives_the_api_and_workers_the_secrets_key_from_a_secret():
    refs = []
    for name, cname in (("buildfarm-api", "api"), ("buildfarm-worker", "worker")):
        workload = k8s_one("Deployment", name)
        value = container_env(workload, container(workload, cname))["BUILDFARM_SECRETS_KEY"]
        assert isinstance(value, dict) and "secretKeyRef" in value, f"{name}: the key is not from a Secret"
        refs.append(value["secretKeyRef"])
    assert refs[0] == refs[1], "the API and the workers must share one key"
    assert "BUILDFARM_SECRETS_KEY" not in k8s_one("ConfigMap", "buildfarm-config")["data"]


# --- schemas ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", schemas.K8S_VERSIONS)
def test_every_k8s_manifest_fits_the_kubernetes_schemas(version):
    errors = []
    for resource in k8s_resources() + generated_secret_resources():
        manifest = {k: v for k, v in resource.items() if k != "__file__"}
        errors.append(schemas.k8s_schema_error(manifest, version))
    assert [e for e in errors if e] == [], f"against Kubernetes {version}"


def test_the_compose_file_fits_the_compose_spec_schema():
    assert schemas.compose_schema_errors(compose_as_run()) == []


# --- credentials ---------------------------------------------------------------------------------

# What compose may not start without: no default for any of them.
COMPOSE_CREDENTIALS = {
    "BUILDFARM_REDIS_PASSWORD",
    "BUILDFARM_S3_ACCESS_KEY",
    "BUILDFARM_S3_SECRET_KEY",
    "BUILDFARM_REGISTRY_USERNAME",
    "BUILDFARM_REGISTRY_PASSWORD",
}


@pytest.mark.parametrize("missing", sorted(COMPOSE_CREDENTIALS))
def test_compose_refuses_to_start_without_each_credential(missing):
    env = {name: f"sample-{name.lower()}" for name in schemas.compose_variables(compose_text())}
    for unset in (None, ""):
        given = {k: v for k, v in env.items() if k != missing} | ({} if unset is None else {missing: ""})
        with pytest.raises(schemas.InterpolationError, match=missing):
            schemas.interpolate(compose_text(), given)


def test_deployed_farms_stop_on_public_credentials():
    services = compose_as_run()["services"]
    for name in ("api", "worker"):
        assert Config.from_env(compose_env(services[name])).require_strong_credentials, name
    assert Config.from_env(k8s_one("ConfigMap", "buildfarm-config")["data"]).require_strong_credentials


def test_minio_and_the_farm_share_one_s3_key_pair_without_a_default():
    services = compose_as_run()["services"]
    minio, api = compose_env(services["minio"]), compose_env(services["api"])
    assert minio["MINIO_ROOT_USER"] == api["BUILDFARM_S3_ACCESS_KEY"]
    assert minio["MINIO_ROOT_PASSWORD"] == api["BUILDFARM_S3_SECRET_KEY"]
    statefulset = k8s_one("StatefulSet", "minio")
    env = container_env(statefulset, container(statefulset, "minio"))
    assert env["MINIO_ROOT_USER"]["secretKeyRef"] == {"name": "buildfarm-s3", "key": "access-key"}
    assert env["MINIO_ROOT_PASSWORD"]["secretKeyRef"] == {"name": "buildfarm-s3", "key": "secret-key"}


def test_k8s_ships_no_secret_value_only_examples_the_operator_fills():
    assert not [d for d in k8s_resources() if d["kind"] == "Secret"], "a committed Secret is a default"
    for keys in k8s_secrets().values():
        assert all(value in ("", "buildfarm-worker") for value in keys.values()), keys
    ignored = (K8S / "secrets" / ".gitignore").read_text().split()
    assert "*.env" in ignored
    for generator in kustomization()["secretGenerator"]:
        assert all(name.endswith(".env") for name in generator["envs"])
    # KEDA's TriggerAuthentication names the Secret: kustomize must keep the names as written.
    assert kustomization()["generatorOptions"]["disableNameSuffixHash"] is True


def test_redis_requires_the_password_that_every_client_uses():
    # compose: the server's --requirepass and every client's URL come from one variable
    services = compose_as_run()["services"]
    command = services["redis"]["command"]
    password = command[command.index("--requirepass") + 1]
    assert compose_env(services["redis"])["REDISCLI_AUTH"] == password
    for name in ("api", "worker"):
        assert compose_env(services[name])["BUILDFARM_REDIS_URL"].startswith(f"redis://:{password}@redis:")
    # k8s: the server, the API, the workers and KEDA read the same Secret key
    redis = k8s_one("StatefulSet", "redis")
    c = container(redis, "redis")
    args = c["command"] + c["args"]
    var = re.fullmatch(r"\$\((\w+)\)", args[args.index("--requirepass") + 1])[1]
    ref = container_env(redis, c)[var]["secretKeyRef"]
    for name, cname in (("buildfarm-api", "api"), ("buildfarm-worker", "worker")):
        workload = k8s_one("Deployment", name)
        env = container_env(workload, container(workload, cname))
        url_var = re.match(r"redis://:\$\((\w+)\)@", env["BUILDFARM_REDIS_URL"])[1]
        assert env[url_var]["secretKeyRef"] == ref, name
    (auth,) = k8s_one("TriggerAuthentication", "buildfarm-redis")["spec"]["secretTargetRef"]
    assert auth["parameter"] == "password" and {"name": auth["name"], "key": auth["key"]} == ref


def test_only_the_workers_hold_the_registry_login_and_the_registry_checks_it():
    login = {"BUILDFARM_REGISTRY_USERNAME", "BUILDFARM_REGISTRY_PASSWORD"}
    # compose: the workers and the one-shot that writes the registry's htpasswd, nothing else
    services = compose_as_run()["services"]
    holders = {name for name, service in services.items() if login & compose_env(service).keys()}
    assert holders == {"worker", "registry-auth"}
    writer = services["registry-auth"]
    assert writer["command"][:3] == ["python", "-m", "common.registry_auth"]
    assert (
        services["registry"]["depends_on"]["registry-auth"]["condition"] == "service_completed_successfully"
    )
    registry_env = compose_env(services["registry"])
    assert registry_env["REGISTRY_AUTH"] == "htpasswd"
    assert registry_env["REGISTRY_AUTH_HTPASSWD_PATH"] == writer["command"][3]
    volumes = [{v.split(":")[0] for v in service["volumes"]} for service in (writer, services["registry"])]
    assert volumes[0] & volumes[1], "the registry does not see the htpasswd written for it"
    # k8s: the worker container and the registry's init container, from one Secret
    holders, refs = set(), []
    for workload in (d for d in k8s_resources() if d["kind"] in ("Deployment", "StatefulSet")):
        spec = pod_spec(workload)
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            env = container_env(workload, c)
            if login & env.keys():
                holders.add((workload["metadata"]["name"], c["name"]))
                refs += [env[name]["secretKeyRef"]["name"] for name in login]
    assert holders == {("buildfarm-worker", "worker"), ("registry", "htpasswd")}
    assert set(refs) == {"buildfarm-registry"}
    registry = k8s_one("StatefulSet", "registry")
    init = container(registry, "htpasswd")
    assert init["command"][:3] == ["python", "-m", "common.registry_auth"]
    env = container_env(registry, container(registry, "registry"))
    assert env["REGISTRY_AUTH"] == "htpasswd" and env["REGISTRY_AUTH_HTPASSWD_PATH"] == init["command"][3]


def test_the_registry_probes_answer_without_the_login():
    # /v2/ answers 401 to a probe: the registry would never be ready.
    assert "/v2/" not in " ".join(compose()["services"]["registry"]["healthcheck"]["test"])
    c = container(k8s_one("StatefulSet", "registry"), "registry")
    assert {c[probe]["httpGet"]["path"] for probe in ("livenessProbe", "readinessProbe")} == {"/"}


# --- the engine's bounds ---------------------------------------------------------------------------


def test_the_dind_engines_have_the_same_memory_and_cpu_bounds_in_compose_and_k8s():
    # Every build on an engine shares its container: a build may use its own cap, and the
    # worker's builds together fit in it (the BuildKit cgroup cap the worker sets on a local
    # engine cannot be set from a worker container).
    worker = k8s_one("Deployment", "buildfarm-worker")
    env = container_env(worker, container(worker, "worker"))
    per_pod = int(env["BUILDFARM_WORKER_PROCESSES"]) * int(env["BUILDFARM_WORKER_THREADS"])
    config = Config.from_env(k8s_one("ConfigMap", "buildfarm-config")["data"])
    limits = container(worker, "dind")["resources"]["limits"]
    dind = compose()["services"]["dind"]
    assert quantity(limits["memory"]) == quantity(dind["mem_limit"]) > per_pod * config.build_memory_bytes
    assert quantity(dind["memswap_limit"]) == quantity(dind["mem_limit"]), "swap would pass the cap"
    # Each build's RUN step may use its own CPU cap and process cap (BUILDFARM_BUILD_CPUS, _PIDS)
    # at once; the engine's container holds them all.
    assert quantity(limits["cpu"]) == quantity(dind["cpus"]) >= per_pod * config.build_cpus
    assert int(dind["pids_limit"]) > max(per_pod * config.build_pids, config.engine_build_pids)


def test_the_k8s_engine_disk_is_bounded_above_the_farms_pruning_budget():
    worker = k8s_one("Deployment", "buildfarm-worker")
    budget = Config.from_env(k8s_one("ConfigMap", "buildfarm-config")["data"]).docker_disk_budget_bytes
    volumes = {v["name"]: v for v in pod_spec(worker)["volumes"]}
    dind = container(worker, "dind")
    store = next(m["name"] for m in dind["volumeMounts"] if m["mountPath"] == "/var/lib/docker")
    assert quantity(volumes[store]["emptyDir"]["sizeLimit"]) > budget
    for name in ("dind", "worker"):
        resources = container(worker, name)["resources"]
        assert quantity(resources["limits"]["ephemeral-storage"]) >= quantity(
            resources["requests"]["ephemeral-storage"]
        )
