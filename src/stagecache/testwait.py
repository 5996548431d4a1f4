"""How a test run waits and ends: its dependencies started, running and healthy (or a failure said in
compose's and the engine's own words with each failed service's last log lines), its time limit, and
SIGTERM taken as Ctrl-C so that the clean-up always runs."""

from __future__ import annotations

import contextlib
import re
import signal
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .engine.base import Compose, Engine
from .errors import ExitCode, StagecacheError
from .progress import Reporter

LOG_LINES = 20  # a failed dependency's last log lines shown
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # compose's terminal codes, even with --no-color


class ServicesNotReady(StagecacheError):
    """A dependency did not become healthy in time."""

    exit_code = ExitCode.FAILED


@dataclass(frozen=True)
class NotReady:
    service: str
    state: str  # "starting", "unhealthy", "exited", "created", …
    last_check: str  # the healthcheck's last exit code and output
    exited: bool
    error: str = ""  # the engine's own message (a container that could not start)
    exit_code: int | None = None

    def __str__(self) -> str:
        if self.state in ("exited", "dead"):
            said = f": {self.error}" if self.error else ""
            return f"{self.service} exited with code {self.exit_code}{said}"
        if self.error:
            return f"{self.service} could not start: {self.error}"
        if self.state in ("starting", "unhealthy"):
            return f"{self.service} is {self.state} ({self.last_check or 'no healthcheck output'})"
        return f"{self.service} is {self.state}"


class Dependencies:
    """The dependencies of one test run's compose project."""

    def __init__(self, engine: Engine, reporter: Reporter) -> None:
        self.engine = engine
        self.reporter = reporter

    def up(self, project: Compose, deps: Sequence[str], wait_timeout: float) -> None:
        """Start the dependencies and wait, at most ``wait_timeout`` seconds, until each is running and,
        where it has a healthcheck, healthy. (Polled here rather than left to ``up --wait``, which was
        seen to return success while a dependency's healthcheck was still failing.) What fails is said
        with compose's or the engine's own words, after the service's last log lines."""
        up = self.engine.compose(project, "up", "--detach", "--no-build", *deps, check=False)
        deadline = time.monotonic() + wait_timeout
        while up.returncode == 0:
            problems = self.not_ready(project, deps)
            if not problems:
                return
            exited = any(p.exited for p in problems)
            if exited or time.monotonic() > deadline:
                last = self.show_logs(project, [p.service for p in problems])
                detail = "; ".join(_with_last_line(p, last) for p in problems)
                when = "" if exited else f" after {wait_timeout:.0f}s"
                raise ServicesNotReady(f"services not ready{when}: {detail}")
            time.sleep(0.25)
        said = compose_error(up.stderr) or f"exit {up.returncode}"
        problems = self.not_ready(project, deps)
        self.show_logs(project, [p.service for p in problems if p.state != "not created"])
        more = "; ".join(str(p) for p in problems if p.error and p.error not in said)
        raise ServicesNotReady(f"could not start {', '.join(deps)}: {said}" + (f"; {more}" if more else ""))

    def not_ready(self, project: Compose, deps: Sequence[str]) -> list[NotReady]:
        rows = {str(row.get("Service")): row for row in self.engine.compose_ps(project)}
        problems = []
        for service in deps:
            row = rows.get(service)
            if row is None:
                problems.append(NotReady(service, "not created", "", exited=False))
                continue
            state, health = str(row.get("State", "")), str(row.get("Health", ""))
            if state == "exited" and str(row.get("ExitCode")) == "0":
                continue  # a one-shot dependency (migrations, fixtures) that has done its job
            if state != "running" or health not in ("", "healthy"):
                container = str(row.get("Name", ""))
                log = self.engine.health_log(container) if health else ""
                error, code = "", None
                if state != "running":
                    details = self.engine.container_state(container)
                    error = str(details.get("Error") or "")
                    code = details.get("ExitCode", row.get("ExitCode"))
                exited = state in ("exited", "dead")
                problems.append(NotReady(service, health or state, log, exited, error, code))
        return problems

    def gone(self, project: Compose, deps: Sequence[str]) -> None:
        """After failed tests: a dependency that exited while they ran is said, with its last log lines
        (a healthcheck can pass while a database is still initialising, and the database die after)."""
        gone = [p for p in self.not_ready(project, deps) if p.exited]
        if gone:
            last = self.show_logs(project, [p.service for p in gone])
            for problem in gone:
                self.reporter.warn(f"{_with_last_line(problem, last)} while the tests ran")

    def show_logs(self, project: Compose, services: Sequence[str]) -> dict[str, str]:
        """Show each service's last log lines; returns the last one of each."""
        last = {}
        for service in services:
            logs = ["logs", "--no-color", "--no-log-prefix", "--tail", str(LOG_LINES), service]
            done = self.engine.compose(project, *logs, check=False)
            lines = [line for line in _ANSI.sub("", done.stdout).splitlines() if line.strip()]
            if lines:
                last[service] = lines[-1].strip()
            shown = "\n".join(f"    {line}" for line in lines) if lines else "    (no output)"
            self.reporter.warn(
                f"{service}: its last log lines (docker compose logs --tail {LOG_LINES}):\n{shown}"
            )
        return last


def _with_last_line(problem: NotReady, last: Mapping[str, str]) -> str:
    """A dependency that exited, with the last line it logged (what a database says before it dies)."""
    said = last.get(problem.service)
    return f"{problem} (its last log line: {said})" if problem.exited and said else str(problem)


def compose_error(stderr: str) -> str:
    """What compose said went wrong: its ``Error …`` lines, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return " | ".join(errors[-2:]) if errors else (lines[-1] if lines else "")


@contextlib.contextmanager
def _signals(handlers: Mapping[signal.Signals, Any]) -> Iterator[None]:
    """Install signal handlers for the block; outside the main thread (where Python forbids it), none."""
    try:
        previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def terminate_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM (a CI runner cancelling the job) takes the same clean-up path as Ctrl-C."""
    return _signals({signal.SIGTERM: _raise_interrupt})


def uninterrupted() -> contextlib.AbstractContextManager[None]:
    """Keep a second Ctrl-C, or a SIGTERM, from cutting the clean-up short."""
    return _signals({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN})


class Deadline:
    """A run's wall-clock limit: when it passes, ``expire`` runs (it stops the test container)."""

    def __init__(self, seconds: float) -> None:
        if not 0 < seconds <= threading.TIMEOUT_MAX:  # the command line refuses these in its own words
            raise ValueError(f"a time limit of {seconds}s cannot be enforced")
        self.seconds = seconds
        self.end = time.monotonic() + seconds
        self.passed = False
        self._timer: threading.Timer | None = None

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    @contextlib.contextmanager
    def enforced(self, expire: Any) -> Iterator[None]:
        def fire() -> None:
            self.passed = True
            expire()

        self._timer = threading.Timer(self.left(), fire)
        self._timer.daemon = True
        self._timer.start()
        try:
            yield
        finally:
            self._timer.cancel()
