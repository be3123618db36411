"""The cache that follows a deployment across hosts (issue 12): the rebuild of a deployment with
one file changed on a host that never built it, against the same rebuild on the host that built
it (warm) and against its first, cold build. A "new host" is this engine with the deployment's
images and the whole build cache removed: it has only the base image, and the cache comes from
the registry (the inline cache of the deployment's last image). Each run is a new deployment
whose RUN step is new to the engine and writes 50 MB, so the cached steps do real work. The
base image is the module's own: BuildKit merges the steps of concurrent builds from one image,
and a merged step skips the cache the other build did not import (moby/buildkit#4674)."""

from __future__ import annotations

import statistics
import subprocess
import time
import uuid

from bench.farm import ROOT, Farm, context_archive

# The docker CLI of the engine's BuildKit (DESIGN.md section 10); the one earlier in PATH cannot.
DOCKER_CLI = "/usr/bin/docker"
KINDS = ("cold", "warm", "new host")


def dockerfile(base_image: str) -> str:
    return (
        f"FROM {base_image}\n"
        f"RUN dd if=/dev/urandom of=/big bs=1M count=50 # {uuid.uuid4().hex}\n"
        "WORKDIR /app\n"
        "COPY app.txt .\n"
    )


def on_engine(farm: Farm, *command: str) -> str:
    """Runs a command against the farm's engine, with the docker CLI of /usr/bin."""
    env = {"PATH": "/usr/bin:/bin", "DOCKER_HOST": farm.config.docker_host}
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def docker(farm: Farm, *args: str) -> str:
    return on_engine(farm, DOCKER_CLI, *args)


def own_base_image(farm: Farm) -> str:
    name = f"buildfarm/busybox:bench-cache-{uuid.uuid4().hex[:8]}"
    on_engine(farm, str(ROOT / "deploy/local/base-image"), name)
    return name


def as_a_new_host(farm: Farm, deployment: dict) -> None:
    """Removes the deployment's images (by tag: the base image and other images stay) and the
    engine's whole build cache."""
    repository = f"{farm.config.registry}/{deployment['subdomain']}"
    tags = docker(farm, "image", "ls", "--format", "{{.Repository}}:{{.Tag}}", repository).split()
    if tags:
        docker(farm, "image", "rm", "--force", *tags)
    docker(farm, "builder", "prune", "--all", "--force")


def timed_build(farm: Farm, deployment: dict, dockerfile_text: str, version: int) -> tuple[float, dict]:
    """Times the upload of the source with app.txt at `version`, then POST deploy, until the
    build's log stream closed at its end (the image pushed): a user's rebuild, upload included."""
    archive = context_archive(dockerfile_text, {"app.txt": f"version {version}\n".encode()})
    start = time.perf_counter()
    farm.client.post(
        f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tgz", archive)}
    ).raise_for_status()
    build = farm.follow(farm.deploy(deployment))
    elapsed = time.perf_counter() - start
    if build["status"] != "success":
        raise SystemExit(f"bench: build_cache build {build['id']} ended {build['status']}: {build['error']}")
    return elapsed, build


def one_run(farm: Farm, base_image: str) -> dict[str, tuple[float, dict]]:
    text = dockerfile(base_image)
    deployment = farm.archive_deployment(context_archive(text))
    runs = {"cold": timed_build(farm, deployment, text, 1), "warm": timed_build(farm, deployment, text, 2)}
    as_a_new_host(farm, deployment)
    runs["new host"] = timed_build(farm, deployment, text, 3)
    return runs


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    count = 3 if quick else 7
    farm.start_workers(processes=1, threads=2)
    base_image = own_base_image(farm)
    try:
        runs = [one_run(farm, base_image) for _ in range(count)]
    finally:
        farm.stop_workers()
        docker(farm, "image", "rm", "--force", base_image)
    seconds = {kind: statistics.median(r[kind][0] for r in runs) for kind in KINDS}
    cached = {kind: statistics.median(r[kind][1]["timings"]["cached_steps"] for r in runs) for kind in KINDS}
    phases = {
        kind: ", ".join(
            f"{phase} {statistics.median(r[kind][1]['timings'][f'{phase}_s'] for r in runs):.2f}"
            for phase in ("source", "build", "push")
        )
        for kind in KINDS
    }
    new_host = seconds["new host"]
    return [
        (
            f"rebuild, one file changed, new host / warm host (median of {count})",
            f"{new_host:.3f} s / {seconds['warm']:.3f} s = **{new_host / seconds['warm']:.2f}**",
            "≤ 1.3",
        ),
        (
            f"rebuild, one file changed, new host / cold build (median of {count})",
            f"{new_host:.3f} s / {seconds['cold']:.3f} s = **{new_host / seconds['cold']:.2f}**",
            "≤ 0.5",
        ),
        (
            "where the rebuild time goes (s, medians; cached of 4 steps)",
            "; ".join(f"{kind}: {phases[kind]}, cached {cached[kind]:.0f}" for kind in KINDS),
            "—",
        ),
    ]
