"""End to end from a directory, as a user starts: `buildfarm deploy DIR --subdomain X --follow`
(the real CLI as a subprocess: packing, upload, queue, build, push, until it exits) against
`docker build DIR -t T && docker push T` by the docker CLI with BuildKit, on the same engine,
alternating A/B pairs. Two contexts: a small one, and 100 MiB of incompressible files. Each run
changes a nonce file first, so that no side finds its layers in the engine's cache."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.farm import BASE_IMAGE, BIN, Farm

DOCKERFILE = f"FROM {BASE_IMAGE}\nCOPY . /app\n"
# The docker CLI that drives BuildKit (DESIGN.md section 10); the one earlier in PATH cannot.
DOCKER_CLI = "/usr/bin/docker"
LARGE_FILES, LARGE_FILE_BYTES = 100, 1 << 20
QUEUED = re.compile(r"^Queued build #\d+ \(([0-9a-f-]{36})\)")


@dataclass
class FarmRun:
    """One `buildfarm deploy --follow`: the time of each line the CLI printed, since its start."""

    total: float
    build: dict
    marks: dict[str, float] = field(default_factory=dict)

    def phases(self, started_wall: float) -> dict[str, float]:
        """Seconds per phase. The CLI's own (pack and upload, queueing the build) come from the
        moments it printed its notes; the worker's from the build record's timings."""

        def at(name: str) -> float:
            return datetime.fromisoformat(self.build[name]).timestamp() - started_wall

        timings = self.build["timings"]
        return {
            "pack+upload": self.marks["uploaded"],
            "deploy call": self.marks["queued"] - self.marks["uploaded"],
            "queued": timings["queued_s"],
            "source": timings["source_s"],
            "build": timings["build_s"],
            "push": timings["push_s"],
            "end → CLI exit": self.total - at("finished_at"),
        }


def write_context(root: Path, large: bool) -> None:
    root.mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    if large:
        (root / "data").mkdir()
        for i in range(LARGE_FILES):
            (root / "data" / f"blob{i:03d}.bin").write_bytes(os.urandom(LARGE_FILE_BYTES))
    else:
        (root / "app.txt").write_text("hello\n" * 700)


def through_farm(farm: Farm, context: Path, subdomain: str) -> FarmRun:
    (context / "nonce").write_bytes(uuid.uuid4().bytes)
    env = {**os.environ, "BUILDFARM_URL": farm.url, "BUILDFARM_TOKEN": farm.token}
    command = [str(BIN / "buildfarm"), "deploy", str(context), "--subdomain", subdomain, "--follow"]
    marks: dict[str, float] = {}
    build_id: list[str] = []
    said: list[str] = []
    start = time.perf_counter()
    cli = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def notes() -> None:
        for line in cli.stderr:
            now = time.perf_counter() - start
            said.append(line)
            if line.startswith("Uploaded "):
                marks["uploaded"] = now
            elif match := QUEUED.match(line):
                marks["queued"] = now
                build_id.append(match[1])

    reader = threading.Thread(target=notes)
    reader.start()
    cli.stdout.read()  # the build's log, drained as a terminal would
    status = cli.wait()
    total = time.perf_counter() - start
    reader.join()
    if status != 0 or not build_id:
        raise SystemExit(f"bench: buildfarm deploy exited {status}: {''.join(said[-5:])}")
    deployment = farm.client.get("/deployments", params={"limit": 100}).json()
    [deployment_id] = [d["id"] for d in deployment if d["subdomain"] == subdomain]
    build = farm.build({"deployment_id": deployment_id, "id": build_id[0]})
    return FarmRun(total, build, marks)


def direct(registry: str, context: Path) -> tuple[float, float]:
    """Seconds of `docker build` and of `docker push`, run as a user would, one after the other."""
    (context / "nonce").write_bytes(uuid.uuid4().bytes)
    tag = f"{registry}/bench-direct:{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    start = time.perf_counter()
    subprocess.run(
        [DOCKER_CLI, "build", "-q", "-t", tag, str(context)], check=True, env=env, capture_output=True
    )
    built = time.perf_counter()
    subprocess.run([DOCKER_CLI, "push", "-q", tag], check=True, env=env, capture_output=True)
    return built - start, time.perf_counter() - built


def measure(
    farm: Farm, context: Path, pairs: int
) -> tuple[list[float], list[dict], list[tuple[float, float]]]:
    subdomain = f"bench-dir-{uuid.uuid4().hex[:8]}"
    through_farm(farm, context, subdomain)  # warm-up: the deployment exists, as on a redeploy
    direct(farm.config.registry, context)
    totals, phases, raws = [], [], []
    for i in range(pairs):
        if i % 2:
            raws.append(direct(farm.config.registry, context))
        started_wall = time.time()
        run = through_farm(farm, context, subdomain)
        totals.append(run.total)
        phases.append(run.phases(started_wall))
        if not i % 2:
            raws.append(direct(farm.config.registry, context))
    return totals, phases, raws


def rows_for(label: str, target: str, pairs: int, totals, phases, raws) -> list[tuple[str, str, str]]:
    ours = statistics.median(totals)
    raw = statistics.median(sum(r) for r in raws)
    where = ", ".join(f"{name} {statistics.median(p[name] for p in phases):.2f}" for name in phases[0])
    raw_phases = (
        f"build {statistics.median(r[0] for r in raws):.2f}, push {statistics.median(r[1] for r in raws):.2f}"
    )
    return [
        (
            f"end-to-end from a directory, {label} (median of {pairs} pairs)",
            f"farm {ours:.3f} s / direct {raw:.3f} s = **{ours / raw:.3f}**",
            target,
        ),
        (f"where the time goes, {label} (s, medians)", f"farm: {where}; direct: {raw_phases}", "—"),
    ]


def run(farm: Farm, quick: bool) -> list[tuple[str, str, str]]:
    pairs = 3 if quick else 7
    farm.start_workers(processes=1, threads=2)
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-dir-") as scratch:
        for label, large, target in (
            ("small context", False, "≤ 1.05"),
            (f"{LARGE_FILES * LARGE_FILE_BYTES >> 20} MiB incompressible", True, "≤ 1.15"),
        ):
            context = Path(scratch) / ("large" if large else "small")
            write_context(context, large)
            rows += rows_for(label, target, pairs, *measure(farm, context, pairs))
    farm.stop_workers()
    return rows
