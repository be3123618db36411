"""BuildKit's plain progress, as engine 20.10's CLI prints it, into the lines of a build's log."""

from __future__ import annotations

from worker.buildkit_progress import PlainProgress
from worker.log_lines import LineCutter

DIGEST = "sha256:" + "ab" * 32


def read(output: str, failed: bool = False) -> tuple[list[str], PlainProgress, str | None]:
    lines: list[str] = []
    progress = PlainProgress(lines.append)
    for line in output.splitlines():
        progress.feed(line)
    return lines, progress, progress.finish(failed)


def test_each_step_is_named_once_with_its_output_cached_mark_and_time_and_internal_steps_are_hidden():
    lines, progress, error = read(f"""#1 [internal] load remote build context
#1 {DIGEST}
#1 DONE 0.0s

#2 copy /context /
#2 DONE 0.1s

#3 [internal] load metadata for docker.io/buildfarm/busybox:latest
#3 DONE 0.0s

#4 [1/3] FROM docker.io/buildfarm/busybox:latest
#4 {DIGEST}
#4 CACHED

#5 [2/3] RUN echo one && sleep 1 && echo two
#5 {DIGEST}
#5 0.207 one
#5 1.210 two
#5 DONE 1.3s

#6 [3/3] COPY a.txt /a.txt
#6 DONE 0.0s

#7 exporting to image
#7 exporting layers 0.1s done
#7 writing image {DIGEST} done
#7 DONE 0.1s
""")
    assert lines == [
        "[1/3] FROM docker.io/buildfarm/busybox:latest",
        "[1/3] CACHED",
        "[2/3] RUN echo one && sleep 1 && echo two",
        "one",
        "two",
        "[2/3] done in 1.3s",
        "[3/3] COPY a.txt /a.txt",
        "[3/3] done in 0.0s",
    ]
    assert (progress.step_count, progress.cached_count, error) == (3, 1, None)


def test_parallel_stages_repeat_no_line_and_say_whose_output_resumes():
    lines, progress, _ = read("""#5 [builder 2/2] RUN make
#5 0.100 compiling
#6 [stage-1 2/3] RUN fetch
#6 0.110 fetching
#5 [builder 2/2] RUN make
#5 0.300 linked
#5 DONE 0.4s
#6 [stage-1 2/3] RUN fetch
#6 DONE 0.5s
""")
    assert lines == [
        "[builder 2/2] RUN make",
        "compiling",
        "[stage-1 2/3] RUN fetch",
        "fetching",
        "[builder 2/2] RUN make (continued)",
        "linked",
        "[builder 2/2] done in 0.4s",
        "[stage-1 2/3] done in 0.5s",
    ]
    assert progress.step_count == 2


def test_a_failed_step_gives_its_error_once_and_the_summary_block_is_dropped():
    lines, _, error = read(
        """#5 [2/2] RUN echo before; exit 3
#5 0.180 before
#5 ERROR: executor failed running [/bin/sh -c echo before; exit 3]: exit code: 3
------
 > [2/2] RUN echo before; exit 3:
#5 0.180 before
------
executor failed running [/bin/sh -c echo before; exit 3]: exit code: 3
""",
        failed=True,
    )
    assert lines == [
        "[2/2] RUN echo before; exit 3",
        "before",
        "[2/2] ERROR: executor failed running [/bin/sh -c echo before; exit 3]: exit code: 3",
    ]
    assert error == "executor failed running [/bin/sh -c echo before; exit 3]: exit code: 3"


def test_a_dockerfile_error_is_the_frontends_message_without_its_wrapping():
    wrapped = "failed to solve with frontend dockerfile.v0: failed to create LLB definition: "
    lines, progress, error = read(
        f"#1 [internal] load remote build context\n#1 DONE 0.0s\n{wrapped}"
        "dockerfile parse error line 2: unknown instruction: FOO\n",
        failed=True,
    )
    assert lines == [] and progress.step_count == 0
    assert error == "dockerfile parse error line 2: unknown instruction: FOO"


def test_an_error_of_a_hidden_step_is_shown_and_warnings_of_a_successful_build_are_kept():
    lines, _, error = read("""#3 [internal] load metadata for docker.io/library/nope:1
#3 ERROR: pull access denied
[WARNING]: Empty continuation line found in: RUN echo
""")
    assert lines == [
        "[internal] load metadata for docker.io/library/nope:1 ERROR: pull access denied",
        "[WARNING]: Empty continuation line found in: RUN echo",
    ]
    assert error is None


def test_the_import_of_a_cache_is_shown():
    lines, _, _ = read("""#4 importing cache manifest from localhost:5000/app:0123abcd
#4 DONE 0.1s
""")
    assert lines == ["importing cache manifest from localhost:5000/app:0123abcd"]


def test_a_step_that_ran_is_not_counted_cached_when_a_concurrent_build_reports_it_cached_later():
    lines, progress, _ = read("""#4 [1/2] FROM docker.io/buildfarm/busybox:latest
#4 DONE 0.0s
#5 [2/2] RUN true
#5 DONE 0.1s
#4 [1/2] FROM docker.io/buildfarm/busybox:latest
#4 CACHED
""")
    assert "[1/2] CACHED" not in lines and (progress.step_count, progress.cached_count) == (2, 0)


def test_output_without_a_final_newline_is_a_line_of_its_own_and_the_step_still_ends():
    lines, _, _ = read("""#7 [4/4] RUN printf 'no newline'
#7 0.296 no newline#7 DONE 0.3s
""")
    assert lines == ["[4/4] RUN printf 'no newline'", "no newline", "[4/4] done in 0.3s"]


def read_pieces(output: str, max_bytes: int) -> list[tuple[str, bool]]:
    """The log of the CLI's output cut as the worker cuts it (worker/log_lines.py)."""
    logged: list[tuple[str, bool]] = []
    progress = PlainProgress(lambda text, continued=False: logged.append((text, continued)))
    cutter = LineCutter(progress.feed, max_bytes)
    cutter.feed(output.encode())
    cutter.finish()
    progress.finish(failed=False)
    return logged


def test_a_long_output_line_reaches_the_log_in_pieces_under_its_step():
    long = "x" * 200
    logged = read_pieces(f"#7 [4/4] RUN long\n#7 0.296 {long}\n#7 0.3 after\n#7 DONE 0.3s\n", 64)
    # The first piece loses the step's prefix (`#7 0.296 `): 64 - 9 bytes of output
    assert logged == [
        ("[4/4] RUN long", False),
        (long[:55], False),
        (long[55:119], True),
        (long[119:183], True),
        (long[183:], True),
        ("after", False),
        ("[4/4] done in 0.3s", False),
    ]


def test_the_end_of_a_step_glued_to_the_last_piece_of_its_output_still_ends_the_step():
    long = "y" * 100
    logged = read_pieces(f"#7 [4/4] RUN long\n#7 0.296 {long}#7 DONE 0.3s\n", 64)
    assert "".join(text for text, _ in logged[1:-1]) == long
    assert logged[-1] == ("[4/4] done in 0.3s", False)


def test_a_long_error_of_the_cli_comes_whole_as_the_builds_error():
    lines: list[str] = []
    progress = PlainProgress(lines.append)
    cutter = LineCutter(progress.feed, 64)
    error = "failed to solve: " + "z" * 150
    cutter.feed(f"#7 [4/4] RUN false\n#7 ERROR: exit code 1\n{error}\n".encode())
    cutter.finish()
    assert progress.finish(failed=True) == "z" * 150
