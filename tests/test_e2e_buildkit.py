"""Issue 12's build features end to end, on the real farm (gunicorn API, Dramatiq worker,
dockerd with BuildKit, registry, Redis, S3): cache mounts, secret mounts and where a secret's
value must never show, build args, no_cache, the user's own mistakes, an archive changed in S3
after its upload, the classic builder setting, and phase timings. Nothing here is mocked."""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
import uuid

import docker.errors
import pytest
import redis

from common.records import keys
from common.s3 import archive_key
from tests.conftest import BASE_IMAGE, wait_until
from tests.farm import (
    MetricsWorker,
    archive_deployment,
    archived_log,
    build_path,
    context_archive,
    deploy,
    dockerfile,
    logs,
    value,
    wait_for_status,
)
from tests.test_e2e_builds import registry_tags

pytestmark = pytest.mark.e2e

ARCHIVE_MISMATCH = "The stored archive does not match its SHA-256: refusing to build it"


@pytest.fixture(scope="module")
def worker(logs_dir, redis_client, s3, docker_client):
    """The module's BuildKit worker; it serves its metrics, where the phase timings are checked."""
    started = MetricsWorker(logs_dir)
    yield started
    started.stop()


def succeeded(client, build: dict) -> dict:
    done = wait_for_status(client, build)
    assert done["status"] == "success", logs(client, build)
    return done


# A step's label: `[2/4]`, or `[stage-0 2/4]` when BuildKit names it by its stage (it names
# a vertex shared with another build as that build did).
STEP = re.compile(r"(\[(?:[^\]]* )?\d+/\d+\]) (.+)")


def step_names(text: str) -> dict[str, str]:
    """Each step's label and name (its first line, `[2/4] RUN make` → `RUN make`)."""
    names: dict[str, str] = {}
    for line in text.splitlines():
        if step := STEP.fullmatch(line):
            names.setdefault(*step.groups())
    return names


def step_lines(text: str, name: str) -> list[str]:
    """The lines of the step named `name`: its first line, its output, then its end."""
    labels = [label for label, step in step_names(text).items() if step == name]
    assert len(labels) == 1, text
    lines = text.splitlines()
    start = lines.index(f"{labels[0]} {name}")
    end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith(f"{labels[0]} "))
    return lines[start : end + 1]


def test_a_cache_mount_keeps_what_one_build_wrote_for_the_next_build_of_the_deployment(client, worker):
    # A cache id of its own: the engine's cache mounts are shared by every build on it.
    cache = f"--mount=type=cache,id=e2e-{uuid.uuid4().hex},target=/cache"
    steps = f'RUN {cache} cat version.txt >> /cache/seen && echo "cache holds: $(cat /cache/seen | xargs)"\n'
    recipe = f"FROM {BASE_IMAGE}\nWORKDIR /app\nCOPY . .\n{steps}"
    # Given a first build that writes its version into the cache mount
    deployment = archive_deployment(client, context_archive(recipe, {"version.txt": b"one\n"}))
    first = succeeded(client, deploy(client, deployment))
    assert "cache holds: one" in logs(client, first).splitlines()
    # When the deployment is built again from another archive, one file changed
    uploaded = client.post(
        f"/deployments/{deployment['id']}/upload",
        files={"archive": ("src.tar.gz", context_archive(recipe, {"version.txt": b"two\n"}))},
    )
    assert uploaded.status_code == 200, uploaded.text
    second = succeeded(client, deploy(client, deployment))
    # Then its RUN step finds what the first one left in the cache
    assert "cache holds: one two" in logs(client, second).splitlines()


def redis_dump(client: redis.Redis) -> bytes:
    """Every key of a Redis database with its whole value, whatever its type; read in pipelines of
    a thousand keys (the test farm's Redis holds every earlier test's keys)."""
    # How each type is read, and its reply flattened to its keys and values
    readers = {
        b"string": (lambda pipe, key: pipe.get(key), lambda value: [value]),
        b"hash": (
            lambda pipe, key: pipe.hgetall(key),
            lambda value: [b for pair in value.items() for b in pair],
        ),
        b"list": (lambda pipe, key: pipe.lrange(key, 0, -1), list),
        b"set": (lambda pipe, key: pipe.smembers(key), list),
        b"zset": (lambda pipe, key: pipe.zrange(key, 0, -1), list),
        b"stream": (
            lambda pipe, key: pipe.xrange(key),
            lambda value: [b for _, entry in value for pair in entry.items() for b in pair],
        ),
    }
    dump = []
    found = list(client.scan_iter(count=1000))
    for start in range(0, len(found), 1000):
        with client.pipeline(transaction=False) as pipe:
            for key in found[start : start + 1000]:
                pipe.type(key)
            typed = zip(found[start : start + 1000], pipe.execute(), strict=True)
        # A key gone since the scan (a lease that expired) holds nothing
        typed = [(key, kind) for key, kind in typed if kind != b"none"]
        for key, kind in typed:
            assert kind in readers, f"{key!r} is a {kind!r}, which this dump cannot read"
        with client.pipeline(transaction=False) as pipe:
            for key, kind in typed:
                readers[kind][0](pipe, key)
            replies = pipe.execute()
        for (key, kind), reply in zip(typed, replies, strict=True):
            dump += [key, *(v for v in readers[kind][1](reply) if v is not None)]
    return b"\n".join(dump)


def test_a_secret_mounted_in_a_run_step_is_read_there_and_found_nowhere_else(
    client, worker, config, s3, redis_client, docker_client
):
    secret = f"tok-{uuid.uuid4().hex}"
    # Given a deployment whose secret `tok` is set through the API
    deployment = archive_deployment(
        client,
        context_archive(
            dockerfile(
                "--mount=type=secret,id=tok sha256sum /run/secrets/tok",
                "--mount=type=secret,id=tok echo printed: $(cat /run/secrets/tok)",
            )
        ),
    )
    response = client.put(f"/deployments/{deployment['id']}/secrets/tok", json={"value": secret})
    assert response.status_code == 204, response.text
    # When it is built
    build = succeeded(client, deploy(client, deployment))
    # Then the step read the secret (it printed its hash), and the step that printed it shows a mask
    text = logs(client, build)
    assert f"{hashlib.sha256(secret.encode()).hexdigest()}  /run/secrets/tok" in text.splitlines()
    assert "printed: ****" in text.splitlines()
    # ...and its value is in neither the live log, the archived log, the build record in S3,
    encoded = secret.encode()
    assert secret not in text
    assert secret not in archived_log(redis_client, s3, config, build, 30)
    record = f"{deployment['id']}/{build['id']}.json"
    assert encoded not in s3.get_object(config.logs_bucket, record).read()
    # ...any key or value of Redis (the records' database and the queue's),
    for database in (config.redis_url, config.queue_redis_url):
        assert encoded not in redis_dump(redis.Redis.from_url(database)), database
    # ...the image's filesystem and configuration, as the engine would save it,
    assert docker_client.inspect_image(build["image_tag"])["Id"]
    saved = b"".join(docker_client.get_image(build["image_tag"]))
    with tarfile.open(fileobj=io.BytesIO(saved)) as image:
        layers = [image.extractfile(m).read() for m in image.getmembers() if m.isfile()]
    assert layers and not any(encoded in layer for layer in layers)
    # ...its history,
    history = json.dumps(docker_client.history(build["image_tag"]))
    assert "sha256sum /run/secrets/tok" in history and secret not in history
    # ...nor the worker's own log
    assert secret not in worker.process.log.read_text()


def test_build_args_come_from_the_deployment_and_the_deploy_wins_and_a_retry_reuses_them(client, worker):
    recipe = (
        f"FROM {BASE_IMAGE}\nARG GREETING\nARG COLOR\nCOPY nonce /\n"
        'RUN echo "greeting=$GREETING color=$COLOR"\n'
    )
    # Given a deployment created with two build args
    deployment = archive_deployment(
        client, context_archive(recipe), build_args={"GREETING": "from-deployment", "COLOR": "blue"}
    )
    # When a deploy overrides one of them
    build = succeeded(client, deploy(client, deployment, build_args={"COLOR": "red"}))
    # Then the RUN step saw the deployment's and the deploy's values, the deploy's winning
    run = step_lines(logs(client, build), 'RUN echo "greeting=from-deployment color=red"')
    assert run[1] == "greeting=from-deployment color=red"
    assert build["build_args"] == {"GREETING": "from-deployment", "COLOR": "red"}
    assert client.get(build_path(build)).json()["build_args"] == build["build_args"]
    # When the deployment's args change and the build is retried
    patched = client.patch(f"/deployments/{deployment['id']}", json={"build_args": {"COLOR": "green"}})
    assert patched.status_code == 200, patched.text
    response = client.post(build_path(build) + "/retry")
    assert response.status_code == 202, response.text
    retried = succeeded(client, response.json())
    # Then the retry has the same args: BuildKit names the RUN step with their values, and finds
    # it CACHED (the values are part of its cache key)
    assert retried["build_args"] == build["build_args"]
    run = step_lines(logs(client, retried), 'RUN echo "greeting=from-deployment color=red"')
    assert len(run) == 2 and run[1].endswith("] CACHED"), run


def cached_steps(text: str) -> list[str]:
    """The names of the steps a log shows as CACHED."""
    names = step_names(text)
    return sorted(
        names[step[1]] for line in text.splitlines() if (step := STEP.fullmatch(line)) and step[2] == "CACHED"
    )


def test_a_rebuild_uses_the_cache_and_no_cache_rebuilds_every_step(client, worker):
    deployment = archive_deployment(client, context_archive(dockerfile("echo run step ran")))
    first = succeeded(client, deploy(client, deployment))
    # FROM and WORKDIR may be cached by other builds on the engine; COPY brings a new nonce
    assert first["timings"]["steps"] == 4
    assert first["timings"]["cached_steps"] == len(cached_steps(logs(client, first))) <= 2
    # When the same archive is built again, normally
    second = succeeded(client, deploy(client, deployment))
    # Then WORKDIR, COPY and RUN are CACHED, and so is the FROM when BuildKit says so (it may
    # report it resolved instead): the record counts what the log shows
    text = logs(client, second)
    shown = cached_steps(text)
    assert {"WORKDIR /app", "COPY . .", "RUN echo run step ran"} <= set(shown), text
    assert second["timings"]["steps"] == 4 and second["timings"]["cached_steps"] == len(shown), text
    assert "run step ran" not in text.splitlines()
    # When it is built a third time with no_cache
    third = succeeded(client, deploy(client, deployment, no_cache=True))
    # Then COPY and RUN ran again; WORKDIR shows CACHED, since this engine's Dockerfile frontend
    # (BuildKit of Docker 20.10) gives its mkdir no --no-cache (docker/compose#8285), an empty
    # folder that a rebuild has no need to redo. The FROM is the engine's to report: it shares
    # the base image's vertex with other builds running on it, under their step's name too.
    # The record counts what the log shows.
    text = logs(client, third)
    shown = cached_steps(text)
    assert third["no_cache"] is True and [n for n in shown if not n.startswith("FROM ")] == [
        "WORKDIR /app"
    ], text
    assert third["timings"]["steps"] == 4 and third["timings"]["cached_steps"] == len(shown)
    assert step_lines(text, "RUN echo run step ran")[1] == "run step ran"


@pytest.mark.parametrize(
    ("recipe", "message"),
    [
        pytest.param(f"FROM {BASE_IMAGE}\nFOO bar\n", "unknown instruction: FOO", id="unknown-instruction"),
        pytest.param(
            f"FROM {BASE_IMAGE}\nCOPY missing.txt /\n", '"/missing.txt" not found', id="copy-missing"
        ),
        pytest.param("ARG X\nFROM $X\n", "base name ($X) should not be blank", id="arg-less-from"),
        pytest.param(dockerfile("exit 3"), "exit code: 3", id="failing-run"),
    ],
)
def test_a_mistake_in_the_dockerfile_fails_the_build_with_the_engines_own_message(
    client, worker, config, recipe, message
):
    deployment = archive_deployment(client, context_archive(recipe))
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "failed" and build["image_tag"] is None
    assert message in build["error"] and "Internal error" not in build["error"]
    assert logs(client, build).splitlines()[-2:] == [f"ERROR: {build['error']}", "Build failed"]
    assert registry_tags(config, deployment["subdomain"]) == []


def stored_archive(recipe: str) -> bytes:
    """A gzip tar whose size depends only on its members' names and sizes (gzip level 0)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=0) as tar:
        data = recipe.encode()
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.mark.parametrize("same_size", [True, False], ids=["same-size", "other-size"])
def test_an_archive_changed_in_s3_after_its_upload_fails_the_build_and_nothing_is_built(
    client, worker, config, s3, docker_client, same_size
):
    nonce = uuid.uuid4().hex
    original = stored_archive(f"FROM {BASE_IMAGE}\nRUN echo original {nonce}\n")
    deployment = archive_deployment(client, original)
    sha = hashlib.sha256(original).hexdigest()
    # Given its stored object replaced by another context, valid and buildable, the same size or not
    recipe = f"FROM {BASE_IMAGE}\nRUN echo replaced {nonce}\n"
    replacement = stored_archive(recipe) if same_size else context_archive(recipe)
    assert (len(replacement) == len(original)) == same_size and replacement != original
    s3.put_object(
        config.sources_bucket, archive_key(deployment["id"], sha), io.BytesIO(replacement), len(replacement)
    )
    # When it is deployed
    build = wait_for_status(client, deploy(client, deployment))
    # Then the build fails on the mismatch, and no image of its tag exists, pushed or built
    assert build["status"] == "failed" and build["error"] == ARCHIVE_MISMATCH
    text = logs(client, build)
    assert text.splitlines()[-2:] == [f"ERROR: {ARCHIVE_MISMATCH}", "Build failed"]
    assert "replaced" not in text and "original" not in text
    assert registry_tags(config, deployment["subdomain"]) == []
    with pytest.raises(docker.errors.ImageNotFound):
        docker_client.inspect_image(f"{config.registry}/{deployment['subdomain']}:{sha[:8]}")


def test_phase_timings_are_on_the_build_record_and_in_the_workers_histograms(client, worker, redis_client):
    # Given a worker with no other build to run: none queued or building in any tenant's queue
    # (one an earlier test left queued would move the histograms too)
    queues = keys.tenant_builds("*", "*")
    wait_until(
        lambda: sum(redis_client.zcard(key) for key in redis_client.scan_iter(match=queues)) == 0,
        120,
        what="an idle farm",
    )
    before = worker.scrape()
    deployment = archive_deployment(client, context_archive(dockerfile("echo timed")))
    build = succeeded(client, deploy(client, deployment))
    timings = build["timings"]
    assert set(timings) == {"queued_s", "source_s", "build_s", "push_s", "steps", "cached_steps"}
    assert all(isinstance(timings[k], float | int) and timings[k] >= 0 for k in timings)
    assert timings["steps"] == 4 and timings["cached_steps"] == len(cached_steps(logs(client, build)))
    after = worker.scrape()
    for phase in ("source", "build", "push"):
        count = "buildfarm_build_phase_seconds_count"
        assert value(after, count, phase=phase) - value(before, count, phase=phase) == 1, phase
        total = "buildfarm_build_phase_seconds_sum"
        observed = value(after, total, phase=phase) - value(before, total, phase=phase)
        assert observed == pytest.approx(timings[f"{phase}_s"], abs=1e-3), phase


def test_the_classic_builder_builds_with_build_args_and_its_own_log(client, classic_worker):
    recipe = f'FROM {BASE_IMAGE}\nARG GREETING\nCOPY nonce /\nRUN echo "greeting=$GREETING"\n'
    deployment = archive_deployment(client, context_archive(recipe), build_args={"GREETING": "classic"})
    build = succeeded(client, deploy(client, deployment))
    text = logs(client, build)
    lines = text.splitlines()
    assert f"Step 1/4 : FROM {BASE_IMAGE}" in lines and 'Step 4/4 : RUN echo "greeting=$GREETING"' in lines
    assert "greeting=classic" in lines
    assert build["build_args"] == {"GREETING": "classic"}


def test_a_mount_under_the_classic_builder_fails_as_the_users_mistake(client, classic_worker):
    deployment = archive_deployment(
        client, context_archive(dockerfile("--mount=type=cache,target=/cache true"))
    )
    build = wait_for_status(client, deploy(client, deployment))
    assert build["status"] == "failed" and "Internal error" not in build["error"]
    assert "--mount" in build["error"] and "BuildKit" in build["error"]
    assert logs(client, build).splitlines()[-2:] == [f"ERROR: {build['error']}", "Build failed"]
