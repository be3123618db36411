"""An upload progress bar on stderr, driven by a file wrapper that counts the bytes the HTTP
client reads from it (the file is streamed, never read whole)."""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TextIO

WIDTH = 30
MIN_INTERVAL_S = 0.1


def human(size: float) -> str:
    """1023 B, 1.5 KiB, 28.6 MiB, 3.0 GiB."""
    if size < 1024:
        return f"{size:.0f} B"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024 or unit == "GiB":
            break
    return f"{size:.1f} {unit}"


class ProgressBar:
    """`Uploading [#####-----]  50%  1.0 MiB / 2.0 MiB`: redrawn in place on a terminal; one
    line per 10 % elsewhere (logs of CI jobs)."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total = total
        self.out = out or sys.stderr
        self.tty = self.out.isatty()
        self.last_draw = 0.0
        self.last_decile = -1

    def render(self, done: int) -> str:
        fraction = min(1.0, done / self.total) if self.total else 1.0
        filled = int(WIDTH * fraction)
        bar = "#" * filled + "-" * (WIDTH - filled)
        return f"Uploading [{bar}] {fraction:4.0%}  {human(done)} / {human(self.total)}"

    def update(self, done: int) -> None:
        finished = done >= self.total
        if self.tty:
            now = time.monotonic()
            if finished or now - self.last_draw >= MIN_INTERVAL_S:
                self.last_draw = now
                self.out.write("\r" + self.render(done))
                self.out.flush()
        else:
            decile = 10 if finished else int(10 * done / self.total)
            if decile > self.last_decile:
                self.last_decile = decile
                self.out.write(self.render(done) + "\n")
                self.out.flush()

    def finish(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


class ProgressReader:
    """A binary file wrapper for httpx's multipart upload: reads pass through, counted."""

    def __init__(self, file: IO[bytes], bar: ProgressBar) -> None:
        self.file, self.bar = file, bar
        self.sent = 0

    def read(self, n: int = -1) -> bytes:
        chunk = self.file.read(n)
        if chunk:
            self.sent += len(chunk)
            self.bar.update(self.sent)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self.sent = self.file.seek(offset, whence)
        return self.sent

    def tell(self) -> int:
        return self.file.tell()

    def fileno(self) -> int:
        return self.file.fileno()
