"""Which command a test run runs, and how its JUnit report is asked for.

The words after ``--`` (in place of the service's command, as ``docker compose run SERVICE COMMAND``
does; options alone go after the default command), else ``[tool.stagecache] test-command``, else the
service's own command when it is a test runner, else ``python -m pytest``. JUnit: ``--junitxml`` is
added to any pytest invocation (``pytest``, ``python -m pytest``, ``poetry run pytest``, ...); other
commands get it through ``PYTEST_ADDOPTS``.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

RESULTS_MOUNT = "/stagecache-results"
DEFAULT_COMMAND = ("python", "-m", "pytest")


_PYTHON = re.compile(r"python(\d+(\.\d+)?)?")
_WRAPPERS = {"poetry": "run", "uv": "run", "pdm": "run", "pipenv": "run", "hatch": "run", "rye": "run"}
_SHELLS = {"sh", "bash", "dash", "ash", "zsh"}


def pytest_like(command: Sequence[str]) -> bool:
    """Whether a command runs pytest, so that ``--junitxml`` can be added to its end: ``pytest``,
    ``py.test``, ``python[3[.11]] -m pytest``, ``coverage run -m pytest``, and each of these after
    ``poetry run``, ``uv run [options]``, ``pdm run``, ``pipenv run``, ``hatch run``, ``rye run``
    or ``env``."""
    words = list(command)
    if not words:
        return False
    first = posixpath.basename(words[0])
    if first in ("pytest", "py.test"):
        return True
    if _PYTHON.fullmatch(first):
        module, rest = _module(words[1:])
        return module == "pytest" or (module == "coverage" and _coverage_runs_pytest(rest))
    if first == "coverage":
        return _coverage_runs_pytest(words[1:])
    if first == "env":
        rest = words[1:]
        while rest and (rest[0].startswith("-") or "=" in rest[0]):
            rest = rest[1:]
        return pytest_like(rest)
    if _WRAPPERS.get(first) and words[1:2] == [_WRAPPERS[first]]:
        rest = words[2:]
        after_option = False
        while rest:
            word = rest[0]
            if pytest_like(rest):
                return True
            if word.startswith("-"):
                after_option = "=" not in word
            elif after_option:  # the option's value (`uv run --extra dev pytest`)
                after_option = False
            else:
                return False
            rest = rest[1:]
    return False


def _module(words: Sequence[str]) -> tuple[str | None, list[str]]:
    """The module of ``python [options] -m MODULE ARGS`` and its arguments."""
    skip = False
    for i, word in enumerate(words):
        if skip:  # the value of -X or -W
            skip = False
        elif word == "-m":
            return (words[i + 1], list(words[i + 2 :])) if i + 1 < len(words) else (None, [])
        elif word.startswith("-m"):
            return word[2:], list(words[i + 1 :])
        elif word in ("-X", "-W"):
            skip = True
        elif not word.startswith("-") or word.startswith("-c"):
            return None, []  # a script, or -c CODE
    return None, []


_COVERAGE_VALUES = {
    "--source",
    "--rcfile",
    "--omit",
    "--include",
    "--context",
    "--data-file",
    "--concurrency",
}


def _coverage_runs_pytest(words: Sequence[str]) -> bool:
    """``coverage run [options] -m pytest``."""
    if words[:1] != ["run"]:
        return False
    rest, i = list(words[1:]), 0
    while i < len(rest):
        word = rest[i]
        if word in _COVERAGE_VALUES:  # an option and its value (`--source app`)
            i += 2
        elif word.startswith("-m") and not word.startswith("--"):
            return _module(rest[i:])[0] == "pytest"
        elif word.startswith("-"):
            i += 1
        else:
            return False  # a script
    return False


def shell_script(command: Sequence[str]) -> str | None:
    """The script of ``sh -c SCRIPT`` (or bash, …), else None."""
    words = list(command)
    if len(words) >= 3 and posixpath.basename(words[0]) in _SHELLS and words[1] in ("-c", "-ec", "-ce"):
        return words[2]
    return None


def runs_tests(command: Sequence[str]) -> bool:
    """Whether a service's own command is a test run (and not a server, a worker or a shell)."""
    if pytest_like(command):
        return True
    words = list(command)
    script = shell_script(words)
    if script is not None:
        return bool(re.search(r"\b(pytest|py\.test|manage\.py test|tox|nox)\b", script))
    if not words:
        return False
    first = posixpath.basename(words[0])
    if first in ("tox", "nox"):
        return True
    if _PYTHON.fullmatch(first):
        module, _ = _module(words[1:])
        if module == "unittest":
            return True
        return module is None and len(words) >= 3 and words[1].endswith("manage.py") and words[2] == "test"
    return False


@dataclass(frozen=True)
class TestCommand:
    """The command a test run runs, and where it came from (for the line that says so)."""

    argv: list[str]
    origin: str


def choose_command(
    words: Sequence[str],
    configured: Sequence[str] | None,
    own: Sequence[str],
    own_origin: str,
    entrypoint: Sequence[str] = (),
) -> TestCommand:
    """The words after ``--`` (a command in place of the service's; options alone go after the
    command chosen without them), else ``configured`` (``[tool.stagecache] test-command``), else the
    service's own command when it runs tests, else ``python -m pytest``."""
    words = list(words)
    if words and not words[0].startswith("-"):
        return TestCommand(words, "the command after --")
    if configured:
        argv, origin = list(configured), "[tool.stagecache] test-command"
    elif own and (runs_tests(own) or pytest_like([*entrypoint, *own])):
        argv, origin = list(own), own_origin
    elif not own and pytest_like(entrypoint):
        argv, origin = [], "the image's ENTRYPOINT"
    else:
        argv, origin = list(DEFAULT_COMMAND), "the default"
        if own:
            origin += f"; {own_origin}, {shlex.join(own)}, runs no tests"
    if words:
        origin += ", with the options after --"
    return TestCommand([*argv, *words], origin)


def junit_name(service: str) -> str:
    return f"junit-{service}.xml"


@dataclass(frozen=True)
class Junit:
    """How a run is asked for its JUnit report: words added to the command, or an environment variable."""

    argv: list[str]
    env: dict[str, str]
    note: str = ""  # why the report may not come ('' when it will)


def with_junit(
    command: Sequence[str], service: str, entrypoint: Sequence[str] = (), addopts: str | None = None
) -> Junit:
    """``--junitxml`` at the end of a pytest command; for any other command (a script, ``make test``),
    ``PYTEST_ADDOPTS`` (after ``addopts``, the value the container would have), so that a pytest it
    starts writes the report too."""
    option = f"--junitxml={RESULTS_MOUNT}/{junit_name(service)}"
    if pytest_like([*entrypoint, *command]):
        return Junit([*command, option], {})
    shown = shlex.join([*entrypoint, *command])
    value = f"{addopts} {option}" if addopts else option
    return Junit(list(command), {"PYTEST_ADDOPTS": value},
                 f"`{shown}` is not a pytest command stagecache can add --junitxml to: "
                 "a pytest it starts is asked for the report through PYTEST_ADDOPTS")  # fmt: skip


# --- signals ------------------------------------------------------------------------------------------
