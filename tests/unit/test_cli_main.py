"""The one error funnel, the global -q/-v, and what render.py prints (no engine)."""

from __future__ import annotations

import importlib
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from stagecache import trace
from stagecache.cli import main
from stagecache.cli.render import TerminalReporter, table
from stagecache.errors import BuildError, ConfigError, ExitCode
from stagecache.project.values import iso, iso_text

main_module = importlib.import_module("stagecache.cli.main")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STAGECACHE_STORE", str(tmp_path / "store"))
    monkeypatch.setattr(trace, "enabled", False)


def raising(exc: BaseException) -> Callable[[str], Callable[[object, object], int]]:
    def command(args: object, ctx: object) -> int:
        raise exc

    return lambda name: command


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        (ConfigError("pyproject.toml: bad"), ExitCode.USAGE, "stagecache: error: pyproject.toml: bad\n"),
        (BuildError("api", "step 3 failed\n"), ExitCode.FAILED,
         "stagecache: error: target 'api' failed to build: step 3 failed\n"),
        (KeyboardInterrupt(), ExitCode.INTERRUPTED, "stagecache: interrupted\n"),
        (PermissionError(13, "Permission denied", "/srv/store"), ExitCode.USAGE,
         "stagecache: error: /srv/store: Permission denied\n"),
    ],
)  # fmt: skip
def test_the_error_funnel(
    exc: BaseException,
    code: int,
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(main_module, "handler", raising(exc))
    assert main(["store", "ls"]) == code
    assert capsys.readouterr().err == message


def test_an_unexpected_error_is_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bug shows its traceback: the funnel catches only what it can explain."""
    monkeypatch.setattr(main_module, "handler", raising(ZeroDivisionError()))
    with pytest.raises(ZeroDivisionError):
        main(["store", "ls"])


def test_verbose_before_or_after_the_command_turns_tracing_on(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def command(args: object, ctx: object) -> int:
        seen.append(trace.enabled)
        return 0

    monkeypatch.setattr(main_module, "handler", lambda name: command)
    for argv in (["store", "ls"], ["-v", "store", "ls"], ["store", "ls", "-v"]):
        assert main(argv, out=io.StringIO()) == 0
    assert seen == [False, True, True]


def test_quiet_before_the_command_silences_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet: list[bool] = []

    def command(args: object, ctx: object) -> int:
        reporter = ctx.reporter  # type: ignore[attr-defined]
        quiet.append(reporter.quiet)
        return 0

    monkeypatch.setattr(main_module, "handler", lambda name: command)
    for argv in (["build"], ["-q", "build"], ["build", "--quiet"]):
        main(argv, out=io.StringIO())
    assert quiet == [False, True, True]


# --- render ---------------------------------------------------------------------------------------------
def test_one_date_format() -> None:
    assert iso(0) == "1970-01-01T00:00:00Z"
    assert iso(1_700_000_000.9) == "2023-11-14T22:13:20Z"
    assert iso_text("2023-11-14T22:13:20.123456789Z") == "2023-11-14T22:13:20Z"
    assert iso_text("2023-11-15T00:13:20+02:00") == "2023-11-14T22:13:20Z"
    assert iso_text("2023-11-14T20:43:20.5-01:30") == "2023-11-14T22:13:20Z"
    assert iso_text("not a date") == "not a date"


def test_table_aligns_columns_and_trims_the_right() -> None:
    out = io.StringIO()
    table([["KEY", "TARGET"], ["sha256:ab", "t"], ["x", ""]], out)
    assert out.getvalue() == "KEY        TARGET\nsha256:ab  t\nx\n"


class ClosedStream(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_closed_stderr_quiets_progress_instead_of_failing_the_work() -> None:
    reporter = TerminalReporter(ClosedStream())
    reporter.step("api", "building")  # no BrokenPipeError: the work (and its clean-up) goes on
    reporter.warn("store over its limit")
    assert reporter.quiet


def test_test_json_sends_the_childrens_stdout_to_stderr(tmp_path: Path) -> None:
    """With `test --json`, a child's output (the tests') goes to stderr; stdout has the JSON alone."""
    script = textwrap.dedent(
        """
        import subprocess, sys
        from stagecache.cli.render import GuardedOutput, children_to_stderr, dump_json
        out = GuardedOutput(sys.stdout)
        print("before", file=out)
        with children_to_stderr(out):
            subprocess.run([sys.executable, "-c", "print('from the tests')"], check=True)
        dump_json({"outcome": "passed"}, out)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == 'before\n{\n  "outcome": "passed"\n}\n'
    assert done.stderr == "from the tests\n"
