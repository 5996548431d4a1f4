"""Which command a test run runs, where it came from, and how its JUnit report is asked for: pure
functions, no engine."""

from __future__ import annotations

import re
import shlex

import pytest

from stagecache.testcmd import (
    RESULTS_MOUNT,
    choose_command,
    pytest_like,
    runs_tests,
    with_junit,
)

UVICORN = ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
REPORT = f"--junitxml={RESULTS_MOUNT}/junit-api.xml"


def test_a_command_after_dashes_replaces_the_service_command() -> None:
    chosen = choose_command(["pytest", "-q"], None, UVICORN, "the service's command")
    assert chosen.argv == ["pytest", "-q"]  # not appended to uvicorn's words
    assert chosen.origin == "the command after --"


def test_a_command_after_dashes_wins_over_the_configured_one() -> None:
    chosen = choose_command(["python", "-m", "pytest", "-x"], ["poetry", "run", "pytest"], [], "")
    assert chosen.argv == ["python", "-m", "pytest", "-x"]


def test_options_after_dashes_go_after_the_default_command() -> None:
    chosen = choose_command(["-x", "-q"], None, ["pytest"], "the image's CMD")
    assert chosen.argv == ["pytest", "-x", "-q"]
    assert chosen.origin == "the image's CMD, with the options after --"


def test_the_configured_command_comes_before_the_service_command() -> None:
    chosen = choose_command([], ["poetry", "run", "pytest", "-v"], ["pytest"], "the image's CMD")
    assert chosen.argv == ["poetry", "run", "pytest", "-v"]
    assert chosen.origin == "[tool.stagecache] test-command"


def test_a_service_command_that_runs_tests_is_kept() -> None:
    chosen = choose_command([], None, ["pytest", "-vv"], "the service's command")
    assert (chosen.argv, chosen.origin) == (["pytest", "-vv"], "the service's command")


def test_a_web_server_is_replaced_by_python_m_pytest_and_the_line_says_why() -> None:
    chosen = choose_command([], None, UVICORN, "the service's command")
    assert chosen.argv == ["python", "-m", "pytest"]
    assert chosen.origin == f"the default; the service's command, {shlex.join(UVICORN)}, runs no tests"


def test_no_command_at_all_is_python_m_pytest() -> None:
    chosen = choose_command([], None, [], "the image's CMD")
    assert (chosen.argv, chosen.origin) == (["python", "-m", "pytest"], "the default")


def test_an_entrypoint_that_is_pytest_keeps_its_arguments() -> None:
    chosen = choose_command([], None, ["-q", "tests"], "the image's CMD", entrypoint=["pytest"])
    assert chosen.argv == ["-q", "tests"]


@pytest.mark.parametrize(
    "command",
    [
        "pytest",
        "pytest -vv tests/",
        "py.test",
        "/usr/local/bin/pytest -q",
        "python -m pytest",
        "python3 -m pytest -x",
        "python3.11 -m pytest",
        "python -X dev -m pytest",
        "python -mpytest",
        "poetry run pytest",
        "poetry run pytest -v",
        "poetry run python -m pytest",
        "uv run pytest",
        "uv run --frozen --extra dev pytest -q",
        "uv run --with=pytest-xdist pytest -n 2",
        "pdm run pytest",
        "pipenv run pytest",
        "hatch run pytest",
        "coverage run -m pytest",
        "coverage run --source=app -m pytest tests/",
        "coverage run --branch --source app -m pytest",
        "python -m coverage run -m pytest",
        "poetry run coverage run -m pytest",
        "env DJANGO_SETTINGS_MODULE=app.settings pytest",
    ],
)
def test_pytest_forms_get_junitxml_at_their_end(command: str) -> None:
    argv = shlex.split(command)
    assert pytest_like(argv)
    junit = with_junit(argv, "api")
    assert junit.argv == [*argv, REPORT]
    assert junit.env == {}
    assert junit.note == ""


@pytest.mark.parametrize(
    "command",
    [
        "uvicorn app.main:app",
        "python manage.py test",
        "python -m unittest",
        "make test",
        "bash scripts/tests-start.sh -x",
        "tox -e py311",
        "sh -c 'alembic upgrade head && pytest'",
        "poetry run python manage.py test",
        "python script.py -m pytest",
        "uv run --extra dev",
        "pytester",
    ],
)
def test_other_commands_are_asked_through_pytest_addopts_with_a_note(command: str) -> None:
    argv = shlex.split(command)
    assert not pytest_like(argv)
    junit = with_junit(argv, "api")
    assert junit.argv == argv
    assert junit.env == {"PYTEST_ADDOPTS": REPORT}
    assert junit.note.startswith(f"`{command}` is not a pytest command") or "sh -c" in command
    assert "PYTEST_ADDOPTS" in junit.note


def test_pytest_addopts_of_the_service_are_kept_before_the_report() -> None:
    junit = with_junit(["make", "test"], "api", addopts="-p no:cacheprovider")
    assert junit.env == {"PYTEST_ADDOPTS": f"-p no:cacheprovider {REPORT}"}


def test_a_pytest_entrypoint_makes_the_command_pytest_arguments() -> None:
    junit = with_junit(["-q"], "api", entrypoint=["pytest"])
    assert junit.argv == ["-q", REPORT]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("pytest", True),
        ("python manage.py test", True),
        ("python -m unittest discover", True),
        ("tox", True),
        ("sh -c 'python manage.py migrate && pytest -v'", True),
        ("bash -c 'sleep 1; python manage.py test'", True),
        ("uvicorn app.main:app --reload", False),
        ("gunicorn app.wsgi", False),
        ("python manage.py runserver 0.0.0.0:8000", False),
        ("python -m huuva_backend", False),
        ("fastapi run --reload app/main.py", False),
        ("sh -c 'python manage.py migrate && python manage.py runserver'", False),
        ("", False),
    ],
)
def test_which_service_commands_run_tests(command: str, expected: bool) -> None:
    assert runs_tests(shlex.split(command)) is expected


def test_the_time_limit_comes_from_the_option_then_the_configuration_then_an_hour() -> None:
    from pathlib import Path

    from stagecache.cli.commands.test import time_limit
    from stagecache.errors import ConfigError

    root = Path("/project")
    assert time_limit("30m", {"test-timeout": 60}, root) == 1800
    assert time_limit("90", {}, root) == 90
    assert time_limit(None, {"test-timeout": 900}, root) == 900
    assert time_limit(None, {"test-timeout": "2h"}, root) == 7200
    assert time_limit(None, {}, root) == 3600
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[tool.stagecache\] test-timeout 'soon'"):
        time_limit(None, {"test-timeout": "soon"}, root)


TOO_LONG = "a time limit is more than 0 and at most 7d: write e.g. 900, 30m or 2h"


@pytest.mark.parametrize("given", ["0", "0s", "0.0m", "8d", "2w", "9" * 400, "99999999999999w"])
def test_a_time_limit_is_more_than_0_and_at_most_7_days(given: str) -> None:
    from pathlib import Path

    from stagecache.cli.commands.test import time_limit
    from stagecache.errors import ConfigError

    with pytest.raises(ConfigError) as refused:
        time_limit(given, {}, Path("/project"))
    assert str(refused.value) == f"--timeout {given!r}: {TOO_LONG}"
    with pytest.raises(ConfigError) as refused:
        time_limit(None, {"test-timeout": 0}, Path("/project"))
    assert str(refused.value) == f"/project/pyproject.toml: [tool.stagecache] test-timeout '0': {TOO_LONG}"
    assert time_limit("7d", {}, Path("/project")) == 7 * 86400
    assert time_limit("0.5", {}, Path("/project")) == 0.5


def test_the_time_to_wait_for_services_is_more_than_0() -> None:
    from stagecache.cli.commands.test import wait_limit
    from stagecache.errors import ConfigError

    assert wait_limit(1) == 1
    for given in (0, -5):
        with pytest.raises(ConfigError, match=rf"^--wait-timeout {given}: "):
            wait_limit(given)


@pytest.mark.parametrize(
    ("option", "line"),
    [
        (["--timeout", "0"], f"--timeout '0': {TOO_LONG}"),
        (["--timeout", "9" * 400], f"--timeout '{'9' * 400}': {TOO_LONG}"),
        (
            ["--wait-timeout", "-5"],
            "--wait-timeout -5: the seconds to wait for services are more than 0, e.g. 120",
        ),
    ],
)
def test_a_bad_limit_is_one_line_and_exit_2_before_the_engine_is_asked(
    option: list[str], line: str, tmp_path: object, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from stagecache.cli import main

    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent")
    assert main(["test", "api", *option, "--", "pytest"]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"stagecache: error: {line}\n"


def test_a_deadline_a_timer_cannot_wait_for_is_refused() -> None:
    from stagecache.testwait import Deadline

    for seconds in (0, -1, float("inf")):
        with pytest.raises(ValueError, match="cannot be enforced"):
            Deadline(seconds)


def test_run_names_are_names_compose_takes() -> None:
    from stagecache.testrun import run_name

    assert re.fullmatch(r"sc-api-tests-[0-9a-f]{8}", run_name("sc", "api-tests"))
    assert re.fullmatch(r"sc-web-app-[0-9a-f]{8}", run_name("sc", "Web.App"))
