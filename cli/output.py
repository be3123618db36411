"""What the commands print: data on stdout, everything said to the user on stderr."""

from __future__ import annotations

import sys

from cli.errors import EXIT_BUILD_FAILED
from common.contract import Build

BUILD_FIELDS = Build.__struct_fields__
COLUMNS = ("number", "id", "status", "created_at", "finished_at", "image_tag")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def line(text: str) -> None:
    print(text, flush=True)


def _cell(value: object) -> str:
    return "-" if value is None or value == "" else str(value)


def build_details(build: dict) -> str:
    keys = [*BUILD_FIELDS, *sorted(k for k in build if k not in BUILD_FIELDS)]
    width = max(len(k) for k in keys)
    return "\n".join(f"{k:<{width}}  {_cell(build.get(k))}" for k in keys)


def build_table(builds: list[dict]) -> str:
    rows = [COLUMNS, *([_cell(b.get(c)) for c in COLUMNS] for b in builds)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def build_label(build: dict) -> str:
    return f"build #{build.get('number', '?')} ({build['id']})"


def final_status(build: dict) -> int:
    """Reports a finished build on stderr; the exit status: 0 on success, else 1."""
    status = build["status"]
    if status == "success":
        note(f"{build_label(build)} succeeded: {build.get('image_tag')}")
        return 0
    reason = f": {build['error']}" if build.get("error") else ""
    kind = f"error_kind: {build['error_kind']}, " if build.get("error_kind") else ""
    note(f"{build_label(build)} {status}{reason} ({kind}image_tag: {_cell(build.get('image_tag'))})")
    return EXIT_BUILD_FAILED
