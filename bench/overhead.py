"""End-to-end overhead: a build through the farm (POST deploy → success, image pushed) against
`docker build && docker push` of the same context run directly, alternating A/B in one run.

Needs a running farm (`make up`); reads `.local/buildfarm.env`. Prints the medians and the ratio.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

import httpx

DOCKERFILE = """FROM buildfarm/busybox:latest
WORKDIR /app
COPY . .
RUN echo step one && ls -l /app
RUN seq 1 200 > /app/numbers.txt && wc -l /app/numbers.txt
RUN echo done
CMD ["cat", "/app/numbers.txt"]
"""


def context_files() -> dict[str, bytes]:
    # A nonce file keeps every run out of the layer cache: both sides do the same work.
    return {"Dockerfile": DOCKERFILE.encode(), "nonce": uuid.uuid4().hex.encode(), "app.txt": b"x" * 4096}


def as_archive(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def through_farm(client: httpx.Client, files: dict[str, bytes]) -> float:
    deployment = client.post(
        "/deployments",
        json={"name": "bench", "subdomain": f"bench-{uuid.uuid4().hex[:10]}", "source_type": "archive"},
    ).json()
    client.post(f"/deployments/{deployment['id']}/upload", files={"archive": ("a.tar.gz", as_archive(files))})
    start = time.perf_counter()
    build = client.post(f"/deployments/{deployment['id']}/deploy").json()
    path = f"/deployments/{deployment['id']}/builds/{build['id']}"
    while (status := client.get(path).json()["status"]) in ("pending", "building"):
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    if status != "success":
        raise SystemExit(f"farm build {build['id']} ended {status}")
    return elapsed


def direct(registry: str, files: dict[str, bytes]) -> float:
    tag = f"{registry}/bench-direct:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_BUILDKIT": "0"}
    with tempfile.TemporaryDirectory() as context:
        for name, data in files.items():
            Path(context, name).write_bytes(data)
        start = time.perf_counter()
        subprocess.run(
            ["docker", "build", "-q", "-t", tag, context], check=True, env=env, capture_output=True
        )
        subprocess.run(["docker", "push", "-q", tag], check=True, env=env, capture_output=True)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    url, token, registry = (os.environ[k] for k in ("BUILDFARM_URL", "BUILDFARM_TOKEN", "BUILDFARM_REGISTRY"))
    farm_times, direct_times = [], []
    with httpx.Client(
        base_url=f"{url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60
    ) as client:
        through_farm(client, context_files())  # warm-up: connections, first pull of the base layers
        for _ in range(args.pairs):
            farm_times.append(through_farm(client, context_files()))
            direct_times.append(direct(registry, context_files()))
    farm, raw = statistics.median(farm_times), statistics.median(direct_times)
    print(f"pairs: {args.pairs}")
    print(f"farm   (POST deploy → success): median {farm:.3f} s  {[round(t, 3) for t in farm_times]}")
    print(f"direct (docker build && push):  median {raw:.3f} s  {[round(t, 3) for t in direct_times]}")
    print(f"ratio farm/direct: {farm / raw:.3f}")


if __name__ == "__main__":
    main()
