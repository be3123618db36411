"""Which paths of a directory go into its build context: `.dockerignore` read and matched as
Docker does (`**`, `!` exceptions, a matched directory excludes what it holds, the last
matching pattern wins), the Dockerfile and the .dockerignore always sent.

The matcher is a port of docker-py's (docker/utils/build.py and fnmatch.py, Apache-2.0, itself
a port of moby's fileutils), answer for answer, case-insensitive as docker-py's is. Importing
docker-py for it cost every `buildfarm` command about 0.1 s of start-up (docker, requests,
urllib3)."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

DOCKERIGNORE = ".dockerignore"


def read_dockerignore(root: Path) -> list[str]:
    """The patterns of root/.dockerignore, as Docker reads them: a leading BOM dropped, lines
    trimmed, blank lines and `#` comments skipped, `! pattern` as `!pattern`, paths cleaned
    and made relative to the context."""
    path = root / DOCKERIGNORE
    if not path.is_file():
        return []
    patterns = []
    text = path.read_text(encoding="utf-8", errors="replace").removeprefix("\ufeff")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = os.path.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/")
        patterns.append("!" + line if invert else line)
    return patterns


def context_paths(root: Path, dockerfile: str = "Dockerfile") -> list[str]:
    """Relative paths (files, links and directories) that go into the context, sorted."""
    patterns = [*read_dockerignore(root), f"!{os.path.normpath(dockerfile)}", f"!{DOCKERIGNORE}"]
    return sorted(set(_walk(str(root), [p for p in map(_Pattern, patterns) if p.dirs])))


def _split(path: str) -> list[str]:
    return [part for part in path.split("/") if part and part != "."]


class _Pattern:
    def __init__(self, text: str) -> None:
        self.exclusion = text.startswith("!")
        parts = _split(text.removeprefix("!").strip())
        # `..` removes the part before it, whether or not that exists (Go's filepath.Clean).
        i = 0
        while i < len(parts):
            if parts[i] == "..":
                del parts[i]
                if i > 0:
                    del parts[i - 1]
                    i -= 1
            else:
                i += 1
        self.dirs = parts
        self.cleaned = "/".join(parts)

    def match(self, path: str) -> bool:
        return _regex(self.cleaned.lower()).match(path.lower()) is not None


def _matches(patterns: list[_Pattern], path: str) -> bool:
    """Excluded? A pattern also matches a path through the path's leading directories."""
    matched = False
    parent = _split(os.path.dirname(path))
    for pattern in patterns:
        match = pattern.match(path)
        if not match and parent and len(pattern.dirs) <= len(parent):
            match = pattern.match("/".join(parent[: len(pattern.dirs)]))
        if match:
            matched = not pattern.exclusion
    return matched


def _walk(root: str, patterns: list[_Pattern], current: str = ""):
    for name in os.listdir(os.path.join(root, current)):
        path = f"{current}/{name}" if current else name
        excluded = _matches(patterns, path)
        if not excluded:
            yield path
        full = os.path.join(root, path)
        if not os.path.isdir(full) or os.path.islink(full):
            continue
        # An excluded directory is still entered if an exception may bring back something in it.
        if excluded and not any(p.exclusion and p.cleaned.startswith(path) for p in patterns):
            continue
        yield from _walk(root, patterns, path)


@cache
def _regex(pattern: str) -> re.Pattern:
    """A shell pattern as a regular expression: `*` and `?` stay within a path part, `**`
    crosses parts, `[…]` and `[!…]` are character classes; no way to quote."""
    i, n, out = 0, len(pattern), "^"
    while i < n:
        c = pattern[i]
        i += 1
        if c == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out += ".*" if i >= n else "(.*/)?"
            else:
                out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = i
            if j < n and pattern[j] == "!":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 1
            if j >= n:
                out += "\\["
            else:
                chars = pattern[i:j].replace("\\", "\\\\")
                i = j + 1
                if chars[0] == "!":
                    chars = "^" + chars[1:]
                elif chars[0] == "^":
                    chars = "\\" + chars
                out += f"[{chars}]"
        else:
            out += re.escape(c)
    return re.compile(out + "$")
