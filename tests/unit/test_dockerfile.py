from __future__ import annotations

import pytest

from stagecache.errors import DockerfileError
from stagecache.key import dockerfile as df
from stagecache.key.words import DEFAULT_PATH

MULTI = """\
ARG PY=3.11
ARG UNUSED=1
FROM python:${PY}-slim AS base
RUN pip install poetry
FROM base AS deps
COPY pyproject.toml poetry.lock ./
RUN --mount=type=cache,target=/root/.cache poetry install
FROM alpine AS tools
RUN echo tools > /t
FROM deps AS prod
COPY src/ src/
FROM deps AS dev
COPY --from=tools /t /t
RUN --mount=type=bind,from=helper,source=/h,target=/h true
COPY tests/ tests/
FROM busybox AS helper
"""


def labels(stages: list[df.Stage]) -> list[str]:
    return [s.label for s in stages]


def test_target_reaches_only_its_stages() -> None:
    parsed = df.parse(MULTI)
    assert labels(parsed.reached(parsed.target("prod"), {})) == ["base", "deps", "prod"]
    # COPY --from and RUN --mount from= (even of a later stage) are edges too
    assert labels(parsed.reached(parsed.target("dev"), {})) == ["base", "deps", "tools", "dev", "helper"]


def test_default_target_is_last_stage() -> None:
    parsed = df.parse(MULTI)
    assert parsed.target(None).label == "helper"


def test_stage_names_are_case_insensitive_and_indexes_work() -> None:
    parsed = df.parse("FROM alpine AS Build\nFROM build\nCOPY --from=0 /a /a\n")
    assert parsed.stages[0].name == "build"
    assert parsed.target("BUILD").index == 0
    deps = parsed.dependencies(parsed.stages[1], {})
    assert [(d.kind, d.ref) for d in deps] == [("stage", "build"), ("stage", "build")]


def test_global_args_substitute_into_from() -> None:
    parsed = df.parse(MULTI)
    base = parsed.target("base")
    first = parsed.dependencies(base, {})[0]
    assert (first.kind, first.ref) == ("image", "python:3.11-slim")
    assert parsed.dependencies(base, {"PY": "3.13"})[0].ref == "python:3.13-slim"


def test_external_copy_from_is_an_image() -> None:
    parsed = df.parse("FROM alpine\nCOPY --from=ghcr.io/x/y:1 /a /a\n")
    deps = parsed.dependencies(parsed.stages[0], {})
    assert [(d.kind, d.ref) for d in deps] == [("image", "alpine"), ("image", "ghcr.io/x/y:1")]


def test_from_a_later_stage_name_means_an_image() -> None:
    parsed = df.parse("FROM later\nFROM alpine AS later\n")
    assert parsed.dependencies(parsed.stages[0], {})[0].kind == "image"


def test_cycle_is_an_error() -> None:
    parsed = df.parse("FROM alpine AS a\nCOPY --from=b /x /x\nFROM alpine AS b\nCOPY --from=a /y /y\n")
    with pytest.raises(DockerfileError, match="circular"):
        parsed.reached(parsed.target("a"), {})


def scope_of(
    parsed: df.Dockerfile, stage: int, line: int, args: dict[str, str] | None = None
) -> dict[str, str]:
    """The variables in force at ``line`` but PATH (BuildKit sets it where the base image does not)."""
    for ins, values in parsed.scopes(parsed.stages[stage], args or {}):
        if ins.line == line:
            assert values["PATH"] == DEFAULT_PATH
            return {k: v for k, v in values.items() if k != "PATH"}
    raise AssertionError(f"no instruction on line {line}")


def test_scopes_follow_docker_scoping() -> None:
    text = "ARG G=global\nFROM alpine\nARG G\nARG L=${G}-local\nENV E=$L\nRUN true\n"
    parsed = df.parse(text)
    assert scope_of(parsed, 0, 6) == {"G": "global", "L": "global-local", "E": "global-local"}
    assert scope_of(parsed, 0, 6, {"L": "x"})["E"] == "x"


def test_values_are_those_in_force_at_each_instruction() -> None:
    parsed = df.parse(
        "FROM alpine\nENV D=src\nCOPY $D /app\nENV D=other\nCOPY $D /x\nARG S=-dev\nCOPY r$S /r\n"
    )
    assert scope_of(parsed, 0, 3)["D"] == "src"
    assert scope_of(parsed, 0, 5)["D"] == "other"
    assert "S" not in scope_of(parsed, 0, 5)


def test_global_args_need_redeclaring_inside_a_stage() -> None:
    parsed = df.parse("ARG G=1\nFROM alpine\nARG L=${G}x\nRUN true\n")
    assert scope_of(parsed, 0, 4)["L"] == "x"


def test_env_and_args_pass_to_child_stages() -> None:
    # BuildKit's stage environment holds ARG values too, and a child stage starts from it: checked by
    # building (FROM base / COPY ${A}.txt copies a.txt), on BuildKit 0.8 and 0.13 alike
    parsed = df.parse("FROM alpine AS base\nARG A=1\nENV D=sub\nFROM base\nCOPY $D/src /x\n")
    assert scope_of(parsed, 1, 5) == {"A": "1", "D": "sub"}


def test_env_and_arg_read_their_words_before_setting_any() -> None:
    parsed = df.parse("FROM alpine\nENV A=a\nENV A=s1 B=$A\nARG C=c\nARG C=s2 D=$C\nRUN true\n")
    assert scope_of(parsed, 0, 6) == {"A": "s1", "B": "a", "C": "s2", "D": "c"}


def test_words_lose_their_quotes() -> None:
    parsed = df.parse('FROM alpine\nENV D="s*" E=\'x y\' F=a\\ b\nARG SRC="s"*\nRUN true\n')
    assert scope_of(parsed, 0, 4) == {"D": "s*", "E": "x y", "F": "a b", "SRC": "s*"}


def test_an_arg_without_a_value_takes_the_global_one_or_sets_nothing() -> None:
    parsed = df.parse("ARG G=g\nARG N\nFROM alpine\nARG G N U\nRUN true\n")
    assert scope_of(parsed, 0, 5) == {"G": "g"}
    assert scope_of(parsed, 0, 5, {"N": "n"}) == {"G": "g", "N": "n"}


def test_automatic_platform_args_once_declared() -> None:
    parsed = df.parse("FROM alpine\nARG TARGETARCH\nRUN true\n").configure(platform="linux/arm64/v8")
    assert scope_of(parsed, 0, 3) == {"TARGETARCH": "arm64"}
    assert parsed.global_values({})["TARGETPLATFORM"] == "linux/arm64/v8"


def test_a_base_image_env_is_in_scope() -> None:
    parsed = df.parse("FROM py\nRUN true\n").configure(image_env=lambda ref: ("PATH=/x", "V=1"))
    scopes = parsed.scopes(parsed.stages[0], {})
    assert scopes[0][1] == {"PATH": "/x", "V": "1"}
    assert scopes[0][1].complete
    unknown = df.parse("FROM py\nRUN true\n")  # no way to know the image's ENV: not complete
    assert not unknown.scopes(unknown.stages[0], {})[0][1].complete


def test_onbuild_triggers_of_a_base_stage_run_first_in_the_child() -> None:
    parsed = df.parse("FROM busybox AS base\nONBUILD COPY trig.txt /trig.txt\nFROM base AS dev\nRUN true\n")
    scopes = parsed.scopes(parsed.stages[1], {})
    assert [(i.cmd, i.args, i.line) for i, _ in scopes] == [("COPY", ("trig.txt", "/trig.txt"), 2),
                                                             ("RUN", ("true",), 4)]  # fmt: skip


def test_a_variable_in_from_is_refused_with_its_line() -> None:
    parsed = df.parse("FROM alpine AS src\nFROM alpine\nARG S=src\nCOPY --from=$S /a /a\n")
    with pytest.raises(DockerfileError, match=r":4: COPY --from=\$S: BuildKit does not expand"):
        parsed.reached(parsed.stages[1], {})
    parsed = df.parse("FROM alpine\nCOPY --from=7 /a /a\n")
    with pytest.raises(DockerfileError, match=r":2: COPY --from=7: invalid stage index 7"):
        parsed.reached(parsed.stages[0], {})


def test_from_with_a_variable_can_name_a_stage() -> None:
    parsed = df.parse("ARG BASE=builder\nFROM alpine AS builder\nFROM ${BASE}\n")
    assert [(d.kind, d.ref) for d in parsed.dependencies(parsed.stages[1], {})] == [("stage", "builder")]
    assert [(d.kind, d.ref) for d in parsed.dependencies(parsed.stages[1], {"BASE": "debian"})] == [
        ("image", "debian")
    ]


@pytest.mark.parametrize(
    ("text", "values", "expected"),
    [
        ("$A/${B}", {"A": "1", "B": "2"}, "1/2"),
        ("${A:-d}", {}, "d"),
        ("${A:-d}", {"A": ""}, "d"),
        ("${A-d}", {"A": ""}, ""),
        ("${A:+alt}", {"A": "x"}, "alt"),
        ("${A:+alt}", {}, ""),
        ("\\$A", {"A": "1"}, "$A"),
        ("$MISSING", {}, ""),
        ('"s*"', {}, "s*"),
        ("${A#*.}", {"A": "a.b.c"}, "b.c"),
    ],
)
def test_words(text: str, values: dict[str, str], expected: str) -> None:
    assert df.parse("FROM scratch\n").word(text, values, 1, "X") == expected


def test_escape_directive_escapes_words_too() -> None:
    parsed = df.parse("# escape=`\nFROM scratch\n")
    assert parsed.word("a`$b\\c", {"b": "x"}, 1, "X") == "a$b\\c"


def test_comments_and_continuations_do_not_change_normalised_instructions() -> None:
    a = df.parse("FROM alpine\nRUN echo a && \\\n    echo b\n")
    b = df.parse("FROM alpine\n# a comment\nRUN echo a && \\\n# inside\n    echo b\n")
    assert [i.normalised() for i in a.stages[0].instructions] == [
        i.normalised() for i in b.stages[0].instructions
    ]


def test_escape_directive_is_honoured() -> None:
    parsed = df.parse("# escape=`\nFROM alpine\nRUN echo a `\n  b\n")
    assert parsed.stages[0].instructions[0].args == ("echo a   b",)


def test_heredoc_content_is_part_of_the_instruction() -> None:
    one = df.parse("FROM alpine\nCOPY <<EOF /x\nhello\nEOF\n")
    two = df.parse("FROM alpine\nCOPY <<EOF /x\nbye\nEOF\n")
    assert one.stages[0].instructions[0].normalised() != two.stages[0].instructions[0].normalised()


def test_mount_parsing() -> None:
    """The fields as written (what secret.py reads the secret ids from)."""
    ins = df.parse("FROM alpine\nRUN --mount=type=bind,src=req.txt,dst=/r --mount=type=secret,id=tok true\n")
    mounts = df.parse_mounts(ins.stages[0].instructions[0])
    assert mounts == [{"type": "bind", "source": "req.txt", "target": "/r"}, {"type": "secret", "id": "tok"}]


def test_mounts_as_the_key_reads_them() -> None:
    """``scope.read_mounts``: the aliases ``src``/``dst``/``destination``, values read as words."""
    from stagecache.key.scope import Mount, read_mounts

    parsed = df.parse(
        "FROM alpine\nRUN --mount=type=bind,src=$REQ,dst=/r,from=base "
        "--mount=type=cache,destination=/c,ro --mount=source=x,target=/x true\n"
    )
    mounts = read_mounts(parsed, parsed.stages[0].instructions[0], {"REQ": "req.txt"})
    assert mounts == [
        Mount("bind", "req.txt", "/r", "base", literal=True),
        Mount("cache", None, "/c", None, literal=False),
        Mount("bind", "x", "/x", None, literal=False),
    ]


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("FROM alpine\nFROBNICATE x\n", 2, "unknown instruction FROBNICATE"),
        ("FROM alpine\nCOPY onlyone\n", 2, "needs at least a source"),
        ("RUN echo\nFROM alpine\n", 1, "before the first FROM"),
        ("# just a comment\n", None, "no instructions"),
        ("ARG A=1\n", None, "no FROM"),
        ("FROM a AS x\nFROM b AS x\n", 2, "duplicate stage name"),
        ("FROM a AS 1x\n", 1, "invalid stage name"),
    ],
)
def test_errors_name_file_and_line(text: str, line: int | None, message: str) -> None:
    with pytest.raises(DockerfileError, match=message) as info:
        df.parse(text, "app/Dockerfile")
    assert info.value.line == line
    assert str(info.value).startswith("app/Dockerfile" + (f":{line}" if line else ""))


def test_unknown_target_lists_stages() -> None:
    parsed = df.parse(MULTI)
    with pytest.raises(DockerfileError, match="no stage named 'nope'; stages: base, deps, tools, prod"):
        parsed.target("nope")
