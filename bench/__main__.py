"""Runs the benchmarks against a farm started here: `python -m bench [--quick] [--only NAME …]
[--write]`. Every figure is measured in this run, against a baseline measured in this run.
`--write` records the table in docs/BENCHMARKS.md (done for full runs)."""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import resource
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.farm import ROOT, Farm
from common.config import Config
from common.registry_auth import registry_login, write_docker_config

# api_load first: it leaves 100,000 build records (10,000 quick), so that every later figure
# is measured on a farm with a history, not on an empty Redis.
BENCHMARKS = [
    "api_load",
    "overhead",
    "from_directory",
    "build_cache",
    "archive_dockerfile",
    "dispatch",
    "fairness",
    "logs",
    "log_fanout",
    "scaleout",
    "memory",
]


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "?")
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{os.cpu_count()} cores ({cpu}), {memory} GiB, {platform.system()} {platform.release()}"


def cpu_steal_ticks() -> int:
    """Time the host's hypervisor gave this machine's CPUs to others (USER_HZ ticks since boot)."""
    return int(Path("/proc/stat").read_text().split()[8])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples: for CI, under 3 minutes")
    parser.add_argument("--only", nargs="*", choices=BENCHMARKS, default=BENCHMARKS)
    parser.add_argument("--write", action="store_true", help="write docs/BENCHMARKS.md")
    args = parser.parse_args()
    # Every socket the API and the followers of bench/log_fanout.py open (5,000 each): the API's
    # processes, started later, inherit the limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    rows = []
    started, steal = time.monotonic(), cpu_steal_ticks()
    with tempfile.TemporaryDirectory() as docker_config:
        # The direct `docker push` baselines log in to the registry as the workers do.
        if registry_login(Config.from_env()):
            os.environ["DOCKER_CONFIG"] = str(write_docker_config(Path(docker_config), Config.from_env()))
        for name in args.only:
            farm = Farm()
            try:
                for row in importlib.import_module(f"bench.{name}").run(farm, args.quick):
                    rows.append(row)
                    print(f"{row[0]}: {row[1].replace('**', '')}  (target {row[2]})", flush=True)
            finally:
                farm.close()
    elapsed = time.monotonic() - started
    # On a shared host, figures move with the CPU time taken from this machine: report it.
    steal = (cpu_steal_ticks() - steal) / os.sysconf("SC_CLK_TCK") / (elapsed * (os.cpu_count() or 1))
    print(f"\n{len(rows)} figures in {elapsed:.0f} s; CPU stolen by the host: {steal:.0%}")
    if args.write:
        write_table(rows, args, steal)


def write_table(rows: list[tuple[str, str, str]], args, steal: float) -> None:
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout
    command = "make bench" + (" QUICK=1" if args.quick else "")
    table = "\n".join(f"| {name} | {value} | {target} |" for name, value, target in rows)
    path = ROOT / "docs" / "BENCHMARKS.md"
    text = path.read_text() if path.exists() else ""
    marker = "<!-- results -->"
    head, _, tail = text.partition(marker)
    tail = tail.partition("<!-- /results -->")[2]
    results = (
        f"{marker}\nMachine: {machine()}. Date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC. "
        f"Commit: {commit.strip()}. Command: `{command}`. CPU stolen by the host during the run: "
        f"{steal:.0%}.\n\n"
        f"| figure | measured | target |\n| --- | --- | --- |\n{table}\n<!-- /results -->"
    )
    path.write_text(head + results + tail)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
