"""End-to-end overhead: POST deploy → success (image pushed) through the farm, against
`docker build && docker push` of the same context by the docker CLI, alternating A/B pairs.
Cold: a nonce file makes every context new (no layer cache); warm: the same context again."""

from __future__ import annotations

import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

from bench.farm import BASE_IMAGE, Farm, context_archive

DOCKERFILE = f"""FROM {BASE_IMAGE}
WORKDIR /app
COPY . .
RUN echo step one && ls -l /app
RUN seq 1 200 > /app/numbers.txt && wc -l /app/numbers.txt
RUN echo done
CMD ["cat", "/app/numbers.txt"]
"""


def through_farm(farm: Farm, deployment: dict) -> float:
    start = time.perf_counter()
    done = farm.follow(farm.deploy(deployment))
    elapsed = time.perf_counter() - start
    if done["status"] != "success":
        raise SystemExit(f"bench: farm build ended {done['status']}: {done['error']}")
    return elapsed


def direct(registry: str, context: Path, tag: str) -> float:
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    start = time.perf_counter()
    subprocess.run(
        ["docker", "build", "-q", "-t", tag, str(context)], check=True, env=env, capture_output=True
    )
    subprocess.run(["docker", "push", "-q", tag], check=True, env=env, capture_output=True)
    return time.perf_counter() - start


def unpack(archive: bytes, into: Path) -> None:
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
        tar.extractall(into, filter="data")


def pair(farm: Farm, warm: bool, farm_first: bool) -> tuple[float, float]:
    """One farm build and one direct build of the same Dockerfile and files, in the order
    given; each side gets its own nonce, so that neither finds the other's layers in the
    engine's cache."""
    deployment = farm.archive_deployment(context_archive(DOCKERFILE, {"app.txt": b"x" * 4096}))
    tag = f"{farm.config.registry}/bench-direct:{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory() as context:
        unpack(context_archive(DOCKERFILE, {"app.txt": b"x" * 4096}), Path(context))
        if warm:
            through_farm(farm, deployment)
            direct(farm.config.registry, Path(context), tag)
        if farm_first:
            ours = through_farm(farm, deployment)
            return ours, direct(farm.config.registry, Path(context), tag)
        raw = direct(farm.config.registry, Path(context), tag)
        return through_farm(farm, deployment), raw


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    pairs = 3 if quick else 7
    farm.start_workers(processes=1, threads=2)
    pair(farm, warm=False, farm_first=True)  # warm-up: connections, the base image's layers in the registry
    rows = []
    for warm in (False, True):
        results = [pair(farm, warm, farm_first=i % 2 == 0) for i in range(pairs)]
        ours = statistics.median(r[0] for r in results)
        raw = statistics.median(r[1] for r in results)
        label = "warm layer cache" if warm else "no cache"
        rows.append(
            (
                f"end-to-end build, {label} (median of {pairs} pairs)",
                f"farm {ours:.3f} s / direct {raw:.3f} s = **{ours / raw:.3f}**",
                "≤ 1.10",
            )
        )
    farm.stop_workers()
    return rows
