"""The images a Dockerfile names, in the shapes the engine's parser accepts: continuations,
comments, directives, case, flags, ARG substitution, stages, COPY --from, RUN --mount, ONBUILD."""

import pytest

from worker.dockerfile_images import UncheckableReference, image_references

OTHER = "localhost:5000/other:1"


def values(text: str, build_args: dict[str, str] | None = None, instruction: str | None = None) -> set[str]:
    """The values found by both readings (one escape character each)."""
    return {
        r.value
        for r in image_references(text, build_args or {})
        if instruction is None or r.instruction == instruction
    }


def test_each_from_is_named_with_its_line_and_instruction():
    [first, second] = image_references("FROM busybox\n\nRUN true\nFROM alpine:3 AS final\n", {})
    assert (first.instruction, first.line, first.value) == ("FROM", 1, "busybox")
    assert (second.instruction, second.line, second.value) == ("FROM", 4, "alpine:3")


def test_instructions_are_case_insensitive_and_may_be_indented():
    assert values(f"  fRoM {OTHER}\n") == {OTHER}


def test_a_from_continued_over_lines_with_comments_and_blank_lines_between_is_one_instruction():
    text = f"FROM \\\n# a comment inside the instruction\n\n   {OTHER} \\  \n  AS x\n"
    found = {(r.instruction, r.line, r.value) for r in image_references(text, {})}
    assert ("FROM", 1, OTHER) in found


def test_a_comment_line_is_not_an_instruction():
    assert values(f"# FROM {OTHER}\nFROM busybox\n") == {"busybox"}


def test_the_escape_directive_changes_the_continuation_character():
    text = f"# escape=`\nFROM `\n  {OTHER}\n"
    assert OTHER in values(text)


@pytest.mark.parametrize(
    "text",
    [
        f"# syntax=docker/dockerfile:1\n# escape=`\nFROM busybox\nRUN echo \\\nFROM {OTHER}\n",
        f"FROM busybox\nRUN echo `\nFROM {OTHER}\n",
    ],
)
def test_both_escape_characters_are_read_so_no_joined_line_hides_a_from(text):
    # With one escape character a builder joins the FROM into the RUN; with the other it does not.
    assert OTHER in values(text)


def test_the_platform_flag_of_from_is_not_the_image():
    assert values(f"FROM --platform=$BUILDPLATFORM {OTHER} AS build\n") == {OTHER}


def test_a_global_arg_default_is_substituted_in_from():
    text = "ARG REGISTRY=localhost:5000\nARG IMAGE=${REGISTRY}/other\nFROM $IMAGE:1\n"
    assert values(text) == {OTHER}


def test_a_build_arg_overrides_a_global_arg_default():
    text = "ARG BASE=busybox\nFROM ${BASE}\n"
    assert values(text, {"BASE": OTHER}) == {OTHER}


def test_a_build_arg_without_its_arg_declared_is_not_substituted():
    assert values("FROM busybox${TAG}\n", {"TAG": ":x"}) == {"busybox"}


def test_default_and_alternative_substitutions():
    assert values("FROM ${UNSET:-localhost:5000/other:1}\n") == {OTHER}
    assert values("ARG SET=1\nFROM ${SET:+localhost:5000/other:1}\n") == {OTHER}
    assert values("FROM busybox${UNSET:+:never}\n") == {"busybox"}


def test_quotes_and_escapes_are_removed_as_the_builder_removes_them():
    assert values('FROM "localhost:5000/other":1\n') == {OTHER}
    assert values("FROM 'localhost:5000'/other:1\n") == {OTHER}
    assert values("ARG X='localhost:5000/other:1'\nFROM $X\n") == {OTHER}
    assert OTHER in values("FROM localhost\\:5000/other:1\n")


def test_a_substitution_the_farm_cannot_follow_is_refused():
    with pytest.raises(UncheckableReference, match="line 1"):
        image_references("FROM ${IMAGE%suffix}\n", {})


def test_the_platform_args_are_known():
    assert values("FROM localhost:5000/${TARGETOS}\n") == {"localhost:5000/linux"}


def test_a_from_naming_an_earlier_stage_is_not_an_image():
    text = "FROM busybox AS Build\nFROM build\nFROM later\nFROM busybox AS later\n"
    assert values(text) == {"busybox", "later"}


def test_copy_from_an_image_is_named_and_from_a_stage_or_index_is_not():
    text = (
        "FROM busybox AS build\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=0 /a /a\n"
        f"COPY --chown=1 --from={OTHER} /a /a\n"
    )
    assert values(text, instruction="COPY --from") == {OTHER}


def test_copy_from_is_read_as_written_and_as_substituted():
    text = "ARG X=localhost:5000/other:1\nFROM busybox\nARG Y=localhost:5000/other:1\nCOPY --from=$Y /a /a\n"
    found = values(text, instruction="COPY --from")
    assert "$Y" in found and OTHER in found
    assert OTHER in values("ARG X=localhost:5000/other:1\nFROM busybox\nCOPY --from=$X /a /a\n")


def test_copy_from_with_an_env_variable():
    assert OTHER in values(f"FROM busybox\nENV SRC={OTHER}\nCOPY --from=$SRC /a /a\n")
    assert OTHER in values(f"FROM busybox\nENV SRC {OTHER}\nCOPY --from=${{SRC}} /a /a\n")


def test_a_quoted_copy_from_flag_loses_its_quotes():
    assert values(f'FROM busybox\nCOPY --from="{OTHER}" /a /a\n', instruction="COPY --from") == {OTHER}


def test_run_mount_from_an_image_is_named():
    text = (
        "FROM busybox AS build\n"
        f"RUN --mount=type=cache,target=/c --mount=type=bind,FROM={OTHER},target=/x \\\n  cat /x/f\n"
        "RUN --mount=from=build,target=/y true\n"
    )
    assert values(text, instruction="RUN --mount from") == {OTHER}


@pytest.mark.parametrize(
    "mount", [f'"type=bind,from={OTHER}",target=/x', f'type=bind,"from={OTHER}",target=/x']
)
def test_run_mount_from_in_csv_quotes(mount):
    assert OTHER in values(f"FROM busybox\nRUN --mount={mount} true\n")


def test_onbuild_triggers_are_checked_whatever_the_stages_here():
    text = f"FROM busybox AS build\nONBUILD COPY --from=build /a /a\nONBUILD copy --from={OTHER} /a /a\n"
    assert values(text, instruction="ONBUILD COPY --from") == {"build", OTHER}


def test_crlf_line_ends_and_a_byte_order_mark():
    assert OTHER in values(f"\ufeffFROM \\\r\n {OTHER}\r\n")


def test_the_flag_end_marker_stops_flag_reading():
    assert values(f"FROM busybox\nCOPY -- --from={OTHER} /a\n", instruction="COPY --from") == set()


def test_the_syntax_directive_names_the_frontend_image_the_engine_pulls():
    text = f"# check=skip\n#  SYNTAX = {OTHER} extra\nFROM busybox\n"
    [frontend] = [r for r in image_references(text, {}) if r.instruction == "# syntax="]
    assert (frontend.line, frontend.value) == (2, OTHER)
    assert "# syntax=" not in {
        r.instruction for r in image_references(f"FROM busybox\n# syntax={OTHER}\n", {})
    }


def test_the_url_sources_of_add_are_named_as_urls_and_local_sources_are_not():
    text = (
        "FROM busybox\n"
        "ARG HOST=localhost:5000\n"
        "ADD --chown=1 http://$HOST/v2/x/blobs/sha256:00 local.txt /dest/\n"
        'ADD ["HTTPS://localhost:5000/a", "/b"]\n'
        "ONBUILD ADD http://localhost:5000/c /c\n"
        "ADD http://ignored-destination/ http://localhost:5000/d\n"
    )
    urls = {(r.instruction, r.value) for r in image_references(text, {}) if r.url}
    assert urls == {
        ("ADD", "http://$HOST/v2/x/blobs/sha256:00"),
        ("ADD", "http://localhost:5000/v2/x/blobs/sha256:00"),
        ("ADD", "HTTPS://localhost:5000/a"),
        ("ONBUILD ADD", "http://localhost:5000/c"),
        ("ADD", "http://ignored-destination/"),
    }
