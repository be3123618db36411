"""`buildfarm farm`: the workers alive, the queue and the pace of builds (GET /farm); with an
admin's token, also the build each busy slot runs."""

from __future__ import annotations

import argparse
import json

from cli import output
from cli.api_client import ApiClient

WORKER_COLUMNS = ("worker", "threads", "in use", "builder", "engine", "last heartbeat", "state")


def _wait(seconds: float | None) -> str:
    return "empty" if seconds is None else f"oldest waiting {seconds:.0f} s"


def summary(farm: dict) -> str:
    queue = farm["queue"]
    lines = [
        f"slots     {farm['slots_in_use']} in use of {farm['slots']}",
        f"queue     {queue['depth']} waiting ({_wait(queue['oldest_wait_s'])}), {queue['running']} running",
        f"builds    {farm['builds_last_hour']} in the last hour ({farm['builds_per_minute']} per minute)",
    ]
    for host in farm["hosts"]:
        state = " (stale)" if host["stale"] else ""
        lines.append(
            f"host      {host['host']}: {host['processes']} processes × {host['threads']} threads, "
            f"{host['slots_in_use']} in use{state}"
        )
    return "\n".join(lines)


def worker_table(workers: list[dict]) -> str:
    rows = [WORKER_COLUMNS]
    for w in workers:
        state = "stale" if w["stale"] else "alive"
        engine = w["engine_version"] or "-"
        rows.append(
            (
                w["id"],
                str(w["threads"]),
                str(w["slots_in_use"]),
                w["builder"],
                engine,
                w["last_heartbeat"],
                state,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(WORKER_COLUMNS))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)


def running_builds(workers: list[dict]) -> list[str]:
    return [
        f"{w['id']}  build #{b['number']} {b['build_id']} of deployment {b['deployment_id']}"
        for w in workers
        for b in w.get("builds", [])
    ]


def run(args: argparse.Namespace) -> int:
    api = ApiClient.from_settings(args.api_url, args.api_token)
    try:
        farm = api.request("GET", "/farm").json()
    finally:
        api.close()
    if args.json:
        output.line(json.dumps(farm, indent=2))
        return 0
    output.line(summary(farm))
    if farm["workers"]:
        output.line("")
        output.line(worker_table(farm["workers"]))
    else:
        output.note("no worker has heartbeated within its expiry: is any worker running?")
    if farm["view"] == "admin":
        output.line("")
        output.line("\n".join(running_builds(farm["workers"])) or "no build running")
    return 0
