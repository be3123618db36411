"""What finding the Dockerfile of a streamed archive costs the worker (issue 13: its images are
checked before the engine has the whole context, worker/archive_dockerfile.py): a 100 MiB
archive from the farm's S3 streamed to /dev/null as worker/archive_stream.py streams it to the
engine, with and without the Dockerfile being found on the way, against one plain gunzip of the
same archive (the least any reading of every member costs). Two archives: one of random bytes
(gzip stores them: cheap to inflate), one of text that expands to twice its size."""

from __future__ import annotations

import io
import os
import resource
import statistics
import tarfile
import time
import zlib

from bench.farm import Farm
from common.s3 import create_s3
from worker.archive_dockerfile import ArchiveDockerfile
from worker.archive_stream import CHUNK, stream_archive
from worker.records import BuildRecords

DOCKERFILE = b"FROM busybox\nRUN true\n"
MIB = 1024 * 1024


def archive(kind: str) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        if kind == "random":
            for i in range(10):
                add(f"blob{i}", os.urandom(10 * MIB))
        else:
            for i in range(2800):
                add(f"src/f{i}.txt", os.urandom(32 * 1024).hex().encode())
        add("Dockerfile", DOCKERFILE)
    return buffer.getvalue()


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measured(action) -> tuple[float, float]:
    """Wall and CPU seconds of this process (all its threads) for one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    action()
    return time.perf_counter() - wall, cpu_seconds() - cpu


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    count = 3 if quick else 7
    return [row for kind in ("random", "text") for row in figures(farm, kind, count)]


def figures(farm: Farm, kind: str, count: int) -> list[tuple[str, str, str]]:
    config, s3, data = farm.config, create_s3(farm.config), archive(kind)
    # A build record as the API makes it (no worker runs here: it stays queued, then is cancelled).
    deployment = farm.archive_deployment(data)
    queued = farm.deploy(deployment)
    build = BuildRecords(farm.redis).load(queued["id"])

    def stream(find: bool) -> None:
        found = ArchiveDockerfile("Dockerfile", config.max_dockerfile_bytes) if find else None
        texts: list[str] = []
        with open(os.devnull, "wb") as out:
            stream_archive(config, s3, build, b"", out, found, texts.append)
        assert texts == ([DOCKERFILE.decode()] if find else [])

    def gunzip() -> None:
        inflate = zlib.decompressobj(31)
        for start in range(0, len(data), CHUNK):
            inflate.decompress(data[start : start + CHUNK])

    samples: dict[str, list[tuple[float, float]]] = {"plain": [], "found": [], "gunzip": []}
    try:
        for _ in range(count):
            samples["plain"].append(measured(lambda: stream(False)))
            samples["found"].append(measured(lambda: stream(True)))
            samples["gunzip"].append(measured(gunzip))
    finally:
        farm.client.post(f"/deployments/{deployment['id']}/builds/{queued['id']}/cancel")
    wall = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    cpu = {name: statistics.median(s[1] for s in runs) for name, runs in samples.items()}
    extra = cpu["found"] - cpu["plain"]
    return [
        (
            f"Dockerfile found in a streamed {len(data) / MIB:.0f} MiB archive ({kind}): extra worker "
            f"CPU / one gunzip of it (median of {count})",
            f"{extra:.2f} s / {cpu['gunzip']:.2f} s = **{extra / cpu['gunzip']:.2f}**",
            "≤ 1.3",
        ),
        (
            f"the same stream's wall time, Dockerfile found / not ({kind})",
            f"{wall['found']:.2f} s / {wall['plain']:.2f} s = **{wall['found'] / wall['plain']:.2f}**",
            "—",
        ),
    ]
