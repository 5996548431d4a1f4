"""BuildKit secrets from compose `build.secrets` and `[tool.stagecache] secrets` (their id and kind in
the key, never their value), and the one warning when a secret-looking build arg reaches a RUN whose
history the image keeps (issue 12, Secrets, findings 4-5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stagecache.errors import ConfigError
from stagecache.key.digest import compute, diff
from stagecache.key.inputs import Inputs, collect
from stagecache.key.spec import BuildSecret, TargetSpec
from stagecache.project.compose import build_spec, targets_from_compose
from stagecache.project.pyproject import read_tool_table, tool_secrets
from tests.fakes import Images

WHERE = "/src/compose.yaml: service 'web'"
MOUNTING = (
    "FROM python:3.11-slim AS app\nRUN --mount=type=secret,id=pip_token test -s /run/secrets/pip_token\n"
)


def inputs(root: Path, dockerfile: str, secrets: tuple[BuildSecret, ...] = (), **args: str) -> Inputs:
    (root / "Dockerfile").write_text(dockerfile)
    spec = TargetSpec("app", root, root / "Dockerfile", None, args, secrets=secrets)
    return collect(
        spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64", salt=lambda: b"k" * 32
    )


# --- compose build.secrets and [tool.stagecache] secrets -------------------------------------------------
def test_compose_build_secrets_become_buildkit_secrets_as_compose_passes_them() -> None:
    """`docker compose config --format json` (2.26) gives build.secrets as {source, target}; compose
    mounts each under its target, else its source, as BuildKit's id (checked with `compose build`)."""
    data: dict[str, Any] = {
        "services": {"web": {"build": {"context": "/src", "secrets": [
            {"source": "tok", "target": "tk"}, {"source": "pip_token"},
        ]}}},
        "secrets": {
            "tok": {"name": "p_tok", "file": "/src/tok.txt"},
            "pip_token": {"name": "p_pip_token", "environment": "PIP_TOKEN"},
        },
    }  # fmt: skip
    (target,) = targets_from_compose(data, Path("/src/compose.yaml")).values()
    assert target.spec.secrets == (
        BuildSecret("tk", "file", "/src/tok.txt"),
        BuildSecret("pip_token", "env", "PIP_TOKEN"),
    )
    assert [s.flag() for s in target.spec.secrets] == ["id=tk,src=/src/tok.txt", "id=pip_token,env=PIP_TOKEN"]


@pytest.mark.parametrize(
    ("declared", "message"),
    [
        ({}, "build.secrets names 'tok', which the top-level `secrets:` lacks"),
        (
            {"tok": {"name": "tok", "external": True}},
            "build.secrets 'tok' is neither `file:` nor `environment:`",
        ),
    ],
)
def test_a_build_secret_a_build_cannot_read_is_refused_in_one_line(
    declared: dict[str, Any], message: str
) -> None:
    conf = {"build": {"context": "/src", "secrets": [{"source": "tok"}]}}
    with pytest.raises(ConfigError) as raised:
        build_spec("web", conf, WHERE, declared)
    assert str(raised.value).startswith(f"{WHERE}: {message}")
    assert "\n" not in str(raised.value)


def test_tool_secrets_are_read_from_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        "[tool.stagecache]\n"
        'secrets = { pip_token = { env = "PIP_TOKEN" }, npmrc = { file = "conf/npmrc" } }\n'
    )
    table = read_tool_table(tmp_path)
    assert tool_secrets(table, tmp_path) == (
        BuildSecret("pip_token", "env", "PIP_TOKEN"),
        BuildSecret("npmrc", "file", str(tmp_path.resolve() / "conf/npmrc")),
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{ x = "PIP_TOKEN" }', r'secrets.x: write \{ env = "VARIABLE" \} or \{ file = "PATH" \}'),
        ('{ x = { env = "A", file = "b" } }', r"secrets.x: write"),
        ('{ x = { url = "https://vault" } }', r"secrets.x: unknown source 'url'"),
    ],
)
def test_bad_tool_secrets_are_refused_in_one_line(tmp_path: Path, value: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(f"[tool.stagecache]\nsecrets = {value}\n")
    with pytest.raises(ConfigError, match=message):
        tool_secrets(read_tool_table(tmp_path), tmp_path)


# --- in the key: presence, never the value ----------------------------------------------------------------
def test_a_mounted_secret_counts_by_id_and_kind_never_by_value_or_source(tmp_path: Path) -> None:
    env = inputs(tmp_path, MOUNTING, (BuildSecret("pip_token", "env", "PIP_TOKEN"),))
    assert env.public["secrets"] == [["pip_token", "env"]]
    other_variable = inputs(tmp_path, MOUNTING, (BuildSecret("pip_token", "env", "OTHER"),))
    assert compute(other_variable) == compute(env)
    file = inputs(tmp_path, MOUNTING, (BuildSecret("pip_token", "file", "/a"),))
    assert compute(
        inputs(tmp_path, MOUNTING, (BuildSecret("pip_token", "file", "/elsewhere/b"),))
    ) == compute(file)
    assert compute(file) != compute(env)  # the kind of source counts
    assert compute(inputs(tmp_path, MOUNTING)) != compute(env)  # and whether it is given at all
    assert "PIP_TOKEN" not in repr(env.public)


def test_a_secret_no_reached_step_mounts_does_not_count(tmp_path: Path) -> None:
    plain = "FROM python:3.11-slim AS app\nRUN true\n"
    given = inputs(tmp_path, plain, (BuildSecret("pip_token", "env", "PIP_TOKEN"),))
    assert "secrets" not in given.public
    assert compute(given) == compute(inputs(tmp_path, plain))
    unreached = (
        "FROM python:3.11-slim AS other\n" + MOUNTING.replace("AS app", "AS other2") + "FROM scratch\n"
    )
    assert "secrets" not in inputs(tmp_path, unreached, (BuildSecret("pip_token", "env", "P"),)).public


def test_a_secret_mounted_under_its_target_or_through_a_variable_counts(tmp_path: Path) -> None:
    by_target = "FROM python:3.11-slim\nRUN --mount=type=secret,target=/run/secrets/pip_token true\n"
    assert inputs(tmp_path, by_target, (BuildSecret("pip_token", "env", "P"),)).public["secrets"]
    by_variable = "FROM python:3.11-slim\nARG ID=pip_token\nRUN --mount=type=secret,id=$ID true\n"
    assert inputs(tmp_path, by_variable, (BuildSecret("pip_token", "env", "P"),)).public["secrets"]


# --- the warning --------------------------------------------------------------------------------------------
CONSUMED = """\
FROM python:3.11-slim AS base
ARG API_TOKEN
ARG DB_PASSWORD
ARG LEVEL
RUN echo building
FROM base AS app
RUN true
"""


def test_a_secret_arg_a_run_sees_gives_one_warning_line_naming_the_fix(tmp_path: Path) -> None:
    found = inputs(tmp_path, CONSUMED, API_TOKEN="t0ken-value", DB_PASSWORD="pw-value", LEVEL="2")
    (warning,) = found.warnings
    assert warning.endswith(
        "/Dockerfile:5: RUN sees the secret-looking build args API_TOKEN, DB_PASSWORD: their values end up "
        "in the image history (docker history) and in the store; pass them as BuildKit secrets instead "
        "(--secret: compose build.secrets or [tool.stagecache] secrets, read with RUN --mount=type=secret)"
    )
    assert "t0ken-value" not in warning


@pytest.mark.parametrize(
    "dockerfile",
    [
        # declared, but no RUN after it
        "FROM python:3.11-slim AS app\nRUN true\nARG API_TOKEN\nCOPY Dockerfile /d\n",
        # a global ARG that the stage does not declare again is not in a RUN's scope
        "ARG API_TOKEN\nFROM python:3.11-slim AS app\nRUN true\n",
        # a stage the image only copies from leaves no history in it
        "FROM python:3.11-slim AS builder\nARG API_TOKEN\nRUN true > /out\n"
        "FROM python:3.11-slim AS app\nCOPY --from=builder /out /out\n",
    ],
)
def test_no_warning_where_the_image_history_keeps_no_value(tmp_path: Path, dockerfile: str) -> None:
    assert inputs(tmp_path, dockerfile, API_TOKEN="t0ken-value").warnings == []


def test_no_warning_for_a_secret_arg_not_given_or_not_secret_looking(tmp_path: Path) -> None:
    assert inputs(tmp_path, CONSUMED, LEVEL="2").warnings == []


def test_key_why_names_a_secret_given_or_taken_away(tmp_path: Path) -> None:
    before = inputs(tmp_path, MOUNTING).public
    after = inputs(tmp_path, MOUNTING, (BuildSecret("pip_token", "env", "PIP_TOKEN"),)).public
    assert diff(before, after).other == ["secrets: None -> [['pip_token', 'env']]"]
