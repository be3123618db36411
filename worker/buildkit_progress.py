"""Turns BuildKit's plain progress (`docker build --progress=plain`) into the lines a person
reads: each step once, its output, CACHED, the time it took, and the engine's error; no
digests, transfer counters or the engine's internal steps.

BuildKit prints a step's lines under its number, `#5 [2/3] RUN make` first, then output as
`#5 0.182 text`, statuses (`#5 extracting …`) and its end (`#5 CACHED`, `#5 DONE 0.2s`,
`#5 ERROR: …`); when steps run in parallel it repeats a step's name each time its lines resume.
After the progress, a failed build prints a summary block between `------` lines and then the
error itself, without the `#` prefix.

A line longer than the log's line limit comes in pieces (worker/log_lines.py): a piece after
the first has no prefix and belongs to the line before it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from worker.build_types import Log

_LINE = re.compile(r"#(\d+) (.*)")
# Output that does not end with a newline gets the step's end glued to it: `#7 0.3 text#7 DONE 0.3s`
# (in the last piece of a long line: `text#7 DONE 0.3s`).
_END = r"#\d+ (?:DONE \d+(?:\.\d+)?s|ERROR: .*|CANCELED)"
_GLUED_END = re.compile(rf"(#\d+ \d+\.\d+ .*?)({_END})")
_GLUED_END_OF_PIECE = re.compile(rf"(.*?)({_END})")
_OUTPUT = re.compile(r"\d+\.\d+ (.*)", re.DOTALL)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_DONE = re.compile(r"DONE (\d+(?:\.\d+)?)s")
# A Dockerfile step: `[2/3] RUN …` or, in a multi-stage build, `[builder 2/3] RUN …`.
_STEP = re.compile(r"\[(?:[^\]]* )?\d+/\d+\] ")
# What the last whole line was, for the pieces that continue it: a step's output (the step's
# number), a line of the CLI's own (TRAILER), or neither (None: its pieces are dropped as it is).
TRAILER = ""
# Shown besides the Dockerfile's steps (by their name's start): where the cache came from.
SHOWN_ALSO = ("importing cache manifest",)
# The Dockerfile frontend's wrapping of its own errors: the rest is the message for the user.
_ERROR_WRAPPERS = (
    "failed to solve with frontend dockerfile.v0: failed to create LLB definition: ",
    "failed to solve with frontend dockerfile.v0: ",
    "failed to solve: ",
)


@dataclass
class _Step:
    name: str
    shown: bool
    cached: bool = False
    done: bool = False

    @property
    def is_dockerfile_step(self) -> bool:
        return bool(_STEP.match(self.name))


@dataclass
class PlainProgress:
    """Fed the CLI's lines one by one; writes readable ones to `log`, counts steps, keeps the
    error the build ended with."""

    log: Log
    steps: dict[str, _Step] = field(default_factory=dict)
    _last: str | None = None
    _continues: str | None = None
    _tail: list[str] = field(default_factory=list)
    _in_summary: bool = False

    @property
    def step_count(self) -> int:
        return sum(1 for step in self.steps.values() if step.is_dockerfile_step)

    @property
    def cached_count(self) -> int:
        return sum(1 for step in self.steps.values() if step.cached and step.is_dockerfile_step)

    def feed(self, line: str, continued: bool = False) -> None:
        if continued:
            self._continue(line)
            return
        self._continues = None
        if line.rfind("#") > 0 and (glued := _GLUED_END.fullmatch(line)):
            self.feed(glued.group(1))
            self.feed(glued.group(2))
            return
        match = _LINE.fullmatch(line)
        if match is None or self._in_summary:
            self._trailer(line)
            return
        number, text = match.groups()
        step = self.steps.get(number)
        if step is None:
            self.steps[number] = _Step(text, shown=bool(_STEP.match(text)) or text.startswith(SHOWN_ALSO))
            if self.steps[number].shown:
                self._say(number, text)
            return
        if text == step.name or _DIGEST.fullmatch(text):
            return
        if output := _OUTPUT.fullmatch(text):
            if self._last != number and step.shown and self._last is not None:
                self._say(number, f"{step.name} (continued)")
            self._say(number, output.group(1))
            self._continues = number
        elif text == "CACHED":
            if step.done:
                return  # a step shared with a concurrent build, which found it in the cache
            step.cached = True
            if step.is_dockerfile_step:
                self._say(number, f"{_label(step.name)} CACHED")
        elif done := _DONE.fullmatch(text):
            step.done = True
            if step.is_dockerfile_step:
                self._say(number, f"{_label(step.name)} done in {done.group(1)}s")
        elif text.startswith("ERROR:"):
            self._say(number, f"{_label(step.name) if step.shown else step.name} {text}")

    def _continue(self, piece: str) -> None:
        if self._continues == TRAILER:
            self._tail[-1] += piece  # the CLI's own lines: bounded by the Dockerfile's size
        elif self._continues is not None:
            if "#" in piece and (glued := _GLUED_END_OF_PIECE.fullmatch(piece)):
                if glued.group(1):
                    self.log(glued.group(1), continued=True)
                self.feed(glued.group(2))
            else:
                self.log(piece, continued=True)

    def _say(self, number: str, text: str) -> None:
        self._last = number
        self.log(text)

    def _trailer(self, line: str) -> None:
        """Lines without a step number: the CLI's warnings, the failure summary, the error."""
        if line == "------":
            self._in_summary = not self._in_summary
        elif not self._in_summary and line.strip():
            self._tail.append(line)
            self._continues = TRAILER

    def finish(self, failed: bool) -> str | None:
        """Logs the trailing lines; for a failed build returns its error (the last of them)
        instead of logging it."""
        error = self._tail.pop() if failed and self._tail else None
        for line in self._tail:
            self.log(line)
        self._tail.clear()
        if error is None:
            return None
        for wrapper in _ERROR_WRAPPERS:
            error = error.removeprefix(wrapper)
        return error


def _label(name: str) -> str:
    """`[2/3]` of `[2/3] RUN make`; other names as they are."""
    match = _STEP.match(name)
    return match.group(0).strip() if match else name
