"""The images a Dockerfile names, and the URLs it has the engine fetch, read as engine 20.10
reads it (BuildKit's Dockerfile parser, which its classic builder shares): line continuations,
comments, case-insensitive instructions, builder flags, then the `# syntax=` frontend, each
`FROM` after ARG substitution, each `COPY --from=` and `RUN --mount=…,from=` with the names of
earlier stages set apart, and each URL source of `ADD` (fetched by the engine itself, from the
engine's host), also inside `ONBUILD`.

The escape character (`\\`, or a backtick after `# escape=`) decides which lines are joined.
Builders have read the directive lines differently over versions (which comment ends them), so
the Dockerfile is read with both escape characters and the references of both readings are
returned: however the engine joins the lines, none of its instructions is missed."""

from __future__ import annotations

import csv
import json
import platform
import re
from collections.abc import Iterator
from dataclasses import dataclass

ESCAPES = ("\\", "`")
_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_BOM = "\ufeff"
# A parser directive (BuildKit's), read from the comment lines that open the Dockerfile.
_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_URL = re.compile(r"^https?://", re.IGNORECASE)
# The platform ARGs BuildKit defines for every FROM; the engine's platform is the worker's host's.
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


class UncheckableReference(Exception):
    """Raised when an image reference uses a substitution the farm cannot follow (the builder
    might): the message is for the user."""


@dataclass(frozen=True)
class ImageReference:
    """One image a Dockerfile names (or, with `url`, a URL the engine fetches for it): the
    instruction that names it, on which line, and the reference after substitution."""

    instruction: str
    line: int
    value: str
    url: bool = False


def image_references(text: str, build_args: dict[str, str]) -> list[ImageReference]:
    """Every image reference of both readings (see above), each once, in the order found."""
    found = dict.fromkeys(_frontends(text))
    for escape in ESCAPES:
        found.update(dict.fromkeys(_Reader(escape, build_args).references(text)))
    return list(found)


def _frontends(text: str) -> Iterator[ImageReference]:
    """The frontend image of a `# syntax=` directive, which the engine pulls and runs. Directives
    end at the first line that is not one; every opening comment line is read, to be sure."""
    for number, line in enumerate(text.removeprefix(_BOM).split("\n"), start=1):
        line = line.strip()
        if line and not line.startswith("#"):
            return
        directive = _DIRECTIVE.match(line)
        if directive and directive[1].lower() == "syntax":
            yield ImageReference("# syntax=", number, directive[2].split(" ", 1)[0])


@dataclass
class _Instruction:
    line: int
    command: str
    flags: list[tuple[str, str]]
    arguments: str


class _Reader:
    """One reading of a Dockerfile with one escape character."""

    def __init__(self, escape: str, build_args: dict[str, str]) -> None:
        self.escape = escape
        self.build_args = build_args
        self.continuation = re.compile(re.escape(escape) + r"[ \t]*$")
        machine = _ARCH.get(platform.machine(), platform.machine())
        # Global ARGs: the platform ones, then those before the first FROM.
        self.meta: dict[str, str | None] = {
            f"{when}{what}": value
            for when in ("TARGET", "BUILD")
            for what, value in (("PLATFORM", f"linux/{machine}"), ("OS", "linux"), ("ARCH", machine))
        } | {"TARGETVARIANT": "", "BUILDVARIANT": ""}

    def references(self, text: str) -> Iterator[ImageReference]:
        stages: set[str] = set()
        scope: dict[str, str | None] | None = None  # the current stage's ARGs; None before FROM
        for instruction in self._instructions(text):
            command = instruction.command
            if command == "arg":
                self._declare(instruction.arguments, self.meta if scope is None else scope)
            elif command == "env" and scope is not None:
                self._set_env(instruction.arguments, scope)
            elif command == "from":
                words = _WHITESPACE.split(instruction.arguments.strip())
                base = self._expand(words[0], self.meta, instruction.line)
                if base and base.lower() not in stages:
                    yield ImageReference("FROM", instruction.line, base)
                if len(words) == 3 and words[1].lower() == "as":
                    stages.add(words[2].lower())
                scope = {}
            else:
                yield from self._sources(instruction, "", stages, scope or {})

    def _sources(
        self, instruction: _Instruction, prefix: str, stages: set[str], scope: dict[str, str | None]
    ) -> Iterator[ImageReference]:
        """The images of `COPY --from=` and `RUN --mount=…,from=`, as written and substituted
        (engine 20.10 does not substitute there; later BuildKit does)."""
        if instruction.command == "onbuild":
            inner = self._split(instruction.line, instruction.arguments)
            if inner is not None:
                # The trigger runs in another build, whose stages are not these.
                yield from self._sources(inner, "ONBUILD ", set(), scope)
            return
        if instruction.command == "add":
            yield from self._urls(instruction, prefix, scope)
            return
        sources: list[tuple[str, str]] = []
        for name, value in instruction.flags:
            if instruction.command == "copy" and name.lower() == "from":
                sources.append(("COPY --from", value))
            elif instruction.command == "run" and name.lower() == "mount":
                sources += [("RUN --mount from", v) for v in _mount_sources(value)]
        for what, written in sources:
            # A builder that substitutes here may or may not see the global ARGs: both are read.
            readings = (
                written,
                *(self._expand(written, s, instruction.line) for s in (scope, self.meta | scope)),
            )
            for value in dict.fromkeys(readings):
                if value and not value.isdigit() and value.lower() not in stages:
                    yield ImageReference(prefix + what, instruction.line, value)

    def _urls(
        self, instruction: _Instruction, prefix: str, scope: dict[str, str | None]
    ) -> Iterator[ImageReference]:
        """The URL sources of `ADD`: every argument but the destination, as written and substituted."""
        for written in _add_arguments(instruction.arguments)[:-1]:
            readings = (
                written,
                *(self._expand(written, s, instruction.line) for s in (scope, self.meta | scope)),
            )
            for value in dict.fromkeys(readings):
                if _URL.match(value):
                    yield ImageReference(prefix + "ADD", instruction.line, value, url=True)

    def _declare(self, arguments: str, scope: dict[str, str | None]) -> None:
        for word in _words(arguments, self.escape):
            name, equals, default = word.partition("=")
            if name in self.build_args:
                scope[name] = self.build_args[name]
            elif equals:
                try:
                    scope[name] = self._expand(default, {**self.meta, **scope}, 0)
                except UncheckableReference:
                    scope[name] = None  # unknown: refused only if an image reference uses it
            elif scope is not self.meta:
                # `ARG X` in a stage takes the global ARG's value.
                scope[name] = self.meta.get(name, "")
            else:
                scope[name] = ""

    def _set_env(self, arguments: str, scope: dict[str, str | None]) -> None:
        """`ENV a=b c=d`, or the older `ENV a b c` (one variable, the rest its value)."""
        words = _words(arguments, self.escape)
        if words and "=" not in words[0]:
            name, *value = _WHITESPACE.split(arguments.strip(), maxsplit=1)
            assignments = [(name, "".join(value))]
        else:
            assignments = [(name, value) for name, _, value in (w.partition("=") for w in words)]
        for name, value in assignments:
            try:
                scope[name] = self._expand(value, self.meta | scope, 0)
            except UncheckableReference:
                scope[name] = None

    def _expand(self, word: str, scope: dict[str, str | None], line: int) -> str:
        try:
            return _Substitution(word, scope, self.escape).result()
        except ValueError as e:
            raise UncheckableReference(f"'{word}' (line {line}): {e}") from None

    def _instructions(self, text: str) -> Iterator[_Instruction]:
        """Each instruction with the line it starts on, its lines joined as the parser joins them."""
        lines = [line.removesuffix("\r") for line in text.removeprefix(_BOM).split("\n")]
        index = 0
        while index < len(lines):
            start, raw = index + 1, lines[index].lstrip()
            index += 1
            if raw.startswith("#"):
                continue
            joined, ended = self._trim(raw)
            if ended and not joined:
                continue
            while not ended and index < len(lines):
                raw = lines[index]
                index += 1
                # Comments and blank lines inside an instruction are left out of it.
                if raw.lstrip().startswith("#") or not raw.strip():
                    continue
                part, ended = self._trim(raw)
                joined += part
            instruction = self._split(start, joined)
            if instruction is not None:
                yield instruction

    def _trim(self, line: str) -> tuple[str, bool]:
        """The line without its continuation mark, and whether the instruction ends on it."""
        trimmed = self.continuation.sub("", line)
        return trimmed, trimmed == line

    def _split(self, line: int, text: str) -> _Instruction | None:
        parts = _WHITESPACE.split(text.strip(), maxsplit=1)
        if not parts[0]:
            return None
        rest, flags = _builder_flags(parts[1]) if len(parts) == 2 else ("", [])
        return _Instruction(line, parts[0].lower(), flags, rest.strip())


def _add_arguments(arguments: str) -> list[str]:
    """ADD's sources and destination: a JSON array of strings, or whitespace-separated words."""
    if arguments.startswith("["):
        try:
            parsed = json.loads(arguments)
        except ValueError:
            parsed = None
        if isinstance(parsed, list) and all(isinstance(item, str) for item in parsed):
            return parsed
    return _WHITESPACE.split(arguments.strip())


def _mount_sources(value: str) -> list[str]:
    """The `from=` values of one `--mount` (comma-separated key=value fields, CSV-quoted)."""
    try:
        [fields] = list(csv.reader([value]))
    except (csv.Error, ValueError):
        return []  # the builder refuses the mount too
    return [field.partition("=")[2] for field in fields if field.partition("=")[0].strip().lower() == "from"]


def _builder_flags(text: str) -> tuple[str, list[tuple[str, str]]]:
    """The leading `--name=value` words of an instruction's arguments (quotes and `\\` as
    BuildKit's extractBuilderFlags reads them) and the rest of the arguments."""
    flags: list[str] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if not text.startswith("--", position):
            break
        word, blank_ok, quote = "", False, ""
        while position < len(text):
            char = text[position]
            if not quote and char.isspace():
                break
            if not quote and char in "'\"":
                quote, blank_ok = char, True
            elif quote and char == quote:
                quote = ""
            elif char == "\\" and position + 1 < len(text):
                position += 1
                word += text[position]
            elif char != "\\":
                word += char
            position += 1
        if word == "--":
            break
        if word or blank_ok:
            flags.append(word)
    pairs = []
    for flag in flags:
        name, _, value = flag[2:].partition("=")
        pairs.append((name, value))
    return text[position:], pairs


def _words(text: str, escape: str) -> list[str]:
    """Whitespace-separated words, quotes and escapes kept (BuildKit's parseWords)."""
    words, word, quote, blank_ok, position = [], "", "", False, 0
    while position < len(text):
        char = text[position]
        if not quote and char.isspace():
            if word or blank_ok:
                words.append(word)
            word, blank_ok = "", False
        elif char == escape and quote != "'":
            if position + 1 < len(text):
                word += char + text[position + 1]
                position += 1
        else:
            if quote and char == quote:
                quote = ""
            elif not quote and char in "'\"":
                quote, blank_ok = char, True
            word += char
        position += 1
    if word or blank_ok:
        words.append(word)
    return words


class _Substitution:
    """One word with its variables substituted and its quotes removed, as BuildKit's shell lexer
    does (ProcessWord): `$VAR`, `${VAR}`, `${VAR:-word}`, `${VAR:+word}`, '…', "…" and the
    escape character. Anything else raises ValueError."""

    def __init__(self, word: str, scope: dict[str, str | None], escape: str) -> None:
        self.text, self.scope, self.escape, self.position = word, scope, escape, 0

    def result(self) -> str:
        return self._until("")

    def _peek(self) -> str:
        return self.text[self.position] if self.position < len(self.text) else ""

    def _next(self) -> str:
        char = self._peek()
        self.position += 1
        return char

    def _until(self, stop: str) -> str:
        out = []
        while (char := self._peek()) != "":
            if stop and char == stop:
                self._next()
                return "".join(out)
            if char == "$":
                out.append(self._dollar())
            elif char == "'":
                out.append(self._single_quoted())
            elif char == '"':
                out.append(self._double_quoted())
            else:
                self._next()
                if char == self.escape:
                    char = self._next()
                    if char == "":
                        break
                out.append(char)
        if stop:
            raise ValueError(f"no closing '{stop}'")
        return "".join(out)

    def _single_quoted(self) -> str:
        self._next()
        end = self.text.find("'", self.position)
        if end < 0:
            raise ValueError("no closing single quote")
        value, self.position = self.text[self.position : end], end + 1
        return value

    def _double_quoted(self) -> str:
        self._next()
        out = []
        while (char := self._peek()) != '"':
            if char == "":
                raise ValueError("no closing double quote")
            if char == "$":
                out.append(self._dollar())
                continue
            self._next()
            if char == self.escape and self._peek() in ('"', "$", self.escape) and self._peek():
                char = self._next()
            out.append(char)
        self._next()
        return "".join(out)

    def _dollar(self) -> str:
        self._next()
        if self._peek() != "{":
            name = self._name()
            return self._value(name) if name else "$"
        self._next()
        if self._peek() in ("", "{", "}", ":"):
            raise ValueError("bad substitution")
        name = self._name()
        after = self._next()
        if after == "}":
            return self._value(name)
        if after != ":":
            raise ValueError(f"'${{{name}{after}' is a substitution the farm does not follow")
        modifier = self._next()
        word = self._until("}")
        value = self._value(name)
        if modifier == "-":
            return value or word
        if modifier == "+":
            return word if value else ""
        raise ValueError(f"'${{{name}:{modifier}' is a substitution the farm does not follow")

    def _name(self) -> str:
        start = self.position
        if self._peek().isdigit():
            while self._peek().isdigit():
                self._next()
        elif self._peek() and self._peek() in "@*#?-$!":
            self._next()
        else:
            while self._peek() and (self._peek().isalnum() or self._peek() == "_"):
                self._next()
        return self.text[start : self.position]

    def _value(self, name: str) -> str:
        value = self.scope.get(name, "")
        if value is None:
            raise ValueError(f"ARG {name} has a default the farm cannot follow")
        return value
