"""JSON log lines (one object per line) carrying the build a line is about: the build a thread
binds (`bind_build`) is a ContextVar, so builds running side by side in one process never mix.

    {"time": "2026-11-28T10:00:00.123Z", "level": "INFO", "logger": "buildfarm.worker",
     "message": "build … claimed (attempt 1)", "process": 4242, "thread": "Thread-3",
     "build_id": "…", "deployment_id": "…"}
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import time
from contextvars import ContextVar

# (build_id, deployment_id) of the build the current thread is working on.
_build: ContextVar[tuple[str | None, str | None]] = ContextVar("buildfarm_log_build", default=(None, None))

BUILD_FIELDS = ("build_id", "deployment_id")
# The API server's loggers, which write through handlers of their own (gunicorn's, which the
# uvicorn worker shares) and do not propagate to the root logger.
SERVER_LOGGERS = ("gunicorn.error", "gunicorn.access", "uvicorn.error", "uvicorn.access")


def bind_build(build_id: str | None, deployment_id: str | None = None) -> None:
    """Tags this thread's next log records with the build (until cleared or the scope ends)."""
    _build.set((build_id, deployment_id))


def build_scope(func):
    """Runs `func` with the caller's binding restored when it returns or raises."""

    @functools.wraps(func)
    def scoped(*args, **kwargs):
        token = _build.set(_build.get())
        try:
            return func(*args, **kwargs)
        finally:
            _build.reset(token)

    return scoped


class BuildContextFilter(logging.Filter):
    """Copies the thread's binding onto each record (in the thread that logs it), unless the
    call gave its own (`extra={"build_id": …}`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in zip(BUILD_FIELDS, _build.get(), strict=True):
            if value is not None and getattr(record, name, None) is None:
                setattr(record, name, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; a traceback goes in `exc_info` as text."""

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
            "thread": record.threadName,
        }
        for name in BUILD_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc_info"] = record.exc_text
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def use_json_logging(level: int | None = None, servers: tuple[str, ...] = ()) -> None:
    """Makes every handler of the root logger and of the `servers`' loggers write JSON lines with
    the build binding (one root handler on stderr if there is none yet)."""
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    if level is not None:
        root.setLevel(level)
    for logger in (root, *map(logging.getLogger, servers)):
        for handler in logger.handlers:
            handler.setFormatter(JsonFormatter())
            if not any(isinstance(f, BuildContextFilter) for f in handler.filters):
                handler.addFilter(BuildContextFilter())
