"""Run a project's tests inside its dev image, with real services, and always clean up.

With a compose file: the test service's images come through the cache (compose never builds them),
and the run gets a compose project of its own (:mod:`.testenv`): fresh volumes, fresh networks, no
published ports, no bind mount into a build context. Its dependencies start and are waited on until
healthy (what fails is said with compose's or the engine's words and the service's last log lines),
the tests run in a one-off container of the test service, JUnit XML comes out into a host directory,
and ``compose down --volumes`` on the run's own project removes what the run created, after a pass, a
failure, a time-out or Ctrl-C alike. Without one (seed 2's shape), the tests run in ``docker run`` and
reach a database on the host through ``--network host`` or an added host entry for the host's gateway.

Which command runs: the words after ``--`` (in place of the service's command, as ``docker compose
run SERVICE COMMAND`` does; options alone go after the default command), else ``[tool.stagecache]
test-command``, else the service's own command when it is a test runner, else ``python -m pytest``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shlex
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import Resolver, Result
from .engine.base import Compose, Engine
from .errors import ConfigError, ExitCode, StagecacheError
from .progress import Reporter, Silent
from .project.settings import Settings, Target
from .refs import LABEL_PREFIX
from .testenv import RUN_LABEL, Isolation, compose_project, dependencies, isolate

RESULTS_MOUNT = "/stagecache-results"
DEFAULT_COMMAND = ("python", "-m", "pytest")
DEFAULT_TIMEOUT = 3600.0  # seconds: a run that never finishes ends after an hour
TIMED_OUT = 124  # the exit code of a run ended by its time limit (as timeout(1) says it)
_TIMED_OUT_LINE = (
    "the run took longer than its time limit, {:g}s (--timeout, [tool.stagecache] test-timeout); "
    "stopped and removed"
)
LOG_LINES = 20  # a failed dependency's last log lines shown
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # compose's terminal codes, even with --no-color


class ServicesNotReady(StagecacheError):
    """A dependency did not become healthy in time."""

    exit_code = ExitCode.FAILED


@dataclass
class TestOutcome:
    service: str
    exit_code: int
    seconds: float
    project: str
    junit: Path | None
    images: list[Result] = field(default_factory=list)
    timed_out: bool = False
    command: list[str] = field(default_factory=list)


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


@dataclass
class HostNetwork:
    """How a container reaches services on the host (seed 2's shape)."""

    host_network: bool = False
    add_hosts: Sequence[str] = ()  # names that resolve to the host's gateway inside the container


# --- which command runs ---------------------------------------------------------------------------------
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


def _terminate_as_interrupt() -> contextlib.AbstractContextManager[None]:
    """SIGTERM (a CI runner cancelling the job) takes the same clean-up path as Ctrl-C."""
    return _signals({signal.SIGTERM: _raise_interrupt})


def _uninterrupted() -> contextlib.AbstractContextManager[None]:
    """Keep a second Ctrl-C, or a SIGTERM, from cutting the clean-up short."""
    return _signals({signal.SIGINT: signal.SIG_IGN, signal.SIGTERM: signal.SIG_IGN})


def _prepare_results(results: Path | None, service: str) -> None:
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
        os.chmod(results, 0o777)  # noqa: S103 - the container's user (often not root) writes the report here
        (results / junit_name(service)).unlink(missing_ok=True)  # never pass off an old report as new


class _Deadline:
    """A run's wall-clock limit: when it passes, ``expire`` runs (it stops the test container)."""

    def __init__(self, seconds: float) -> None:
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


@dataclass
class Plan:
    """What a test run will do, decided before it starts (and what ``--skip-passed`` compares)."""

    service: str
    images: list[Result]
    command: TestCommand
    entrypoint: list[str] = field(default_factory=list)
    isolation: Isolation | None = None  # with compose: the run's own project
    project: str = ""
    addopts: str | None = None  # PYTEST_ADDOPTS in the service's environment
    keep_mounts: bool = False


@dataclass
class TestRunner:
    docker: Engine
    resolver: Resolver
    reporter: Reporter = field(default_factory=Silent)

    # --- planning -----------------------------------------------------------------------------------
    def plan_compose(
        self,
        settings: Settings,
        service: str,
        *,
        words: Sequence[str] = (),
        keep_mounts: bool = False,
        project: str | None = None,
    ) -> Plan:
        """Resolve the images, choose the command and make the run's own compose project."""
        services = settings.compose_data.get("services") or {}
        if service not in services:
            raise ConfigError(_unknown(settings, service))
        names = [service, *dependencies(services, service)]
        images = self.images_for(settings, names)
        project = project or run_name("sc", service)
        isolation = isolate(
            settings.compose_data,
            service,
            project=project,
            images={r.target: r.image for r in images},
            contexts=_contexts(settings),
            keep_mounts=keep_mounts,
        )
        conf = services[service]
        image = next((r.image for r in images if r.target == service), None) or conf.get("image")
        own, origin, entrypoint = self._own_command(conf, str(image) if image else None)
        command = choose_command(words, _configured(settings), own, origin, entrypoint)
        environment = conf.get("environment") or {}
        addopts = environment.get("PYTEST_ADDOPTS") if isinstance(environment, dict) else None
        return Plan(service, images, command, entrypoint, isolation, project, addopts, keep_mounts)

    def plan_plain(self, settings: Settings | None, target: Target, *, words: Sequence[str] = ()) -> Plan:
        result = self.resolver.resolve(target)
        info = self.docker.image_inspect(result.image)
        own = list(info.cmd) if info else []
        entrypoint = list(info.entrypoint) if info else []
        configured = _configured(settings) if settings is not None else None
        command = choose_command(words, configured, own, "the image's CMD", entrypoint)
        return Plan(target.name, [result], command, entrypoint)

    def _own_command(self, conf: Mapping[str, Any], image: str | None) -> tuple[list[str], str, list[str]]:
        """The service's command (compose's ``command:``, else the image's CMD), where it comes from,
        and the entrypoint it runs under."""
        info = None
        command, entrypoint = conf.get("command"), conf.get("entrypoint")
        if (not command or entrypoint is None) and image:
            info = self.docker.image_inspect(image)
        if entrypoint is None:
            entrypoint = list(info.entrypoint) if info else []
        elif isinstance(entrypoint, str):
            entrypoint = shlex.split(entrypoint)
        if isinstance(command, str):
            return shlex.split(command), "the service's command", list(entrypoint)
        if command:
            return [str(c) for c in command], "the service's command", list(entrypoint)
        return (list(info.cmd) if info else []), "the image's CMD", list(entrypoint)

    # --- compose projects ---------------------------------------------------------------------------
    def run_compose(
        self,
        settings: Settings,
        plan: Plan,
        *,
        results: Path | None = None,
        wait_timeout: int = 120,
        timeout: float = DEFAULT_TIMEOUT,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> TestOutcome:
        start = time.monotonic()
        assert plan.isolation is not None
        service, isolation = plan.service, plan.isolation
        deps = isolation.services[1:]
        for who, line in isolation.notes(settings.root):
            self.reporter.step(who, line)
        env = dict(env or {})
        junit = self._junit(plan, results, env.get("PYTEST_ADDOPTS", plan.addopts))
        env.update(junit.env)
        deadline = _Deadline(timeout)
        code, timed_out = 1, False
        with compose_project(isolation.model, plan.project) as project:
            _prepare_results(results, service)
            with _terminate_as_interrupt():
                try:
                    if deps:
                        self.reporter.step(service, f"starting {', '.join(deps)} (project {project.name})")
                        try:
                            self._up(project, deps, min(wait_timeout, deadline.left()))
                        except ServicesNotReady:
                            if deadline.left() > 0:
                                raise
                            timed_out = True
                    if not timed_out:
                        self.reporter.step(
                            service, f"running {shlex.join(junit.argv)} ({plan.command.origin})"
                        )
                        name = f"{project.name}-tests"
                        args = [
                            "run",
                            "--rm",
                            "--no-deps",
                            "--name",
                            name,
                            "--label",
                            f"{RUN_LABEL}={project.name}",
                        ]
                        if not tty:
                            args.append("-T")
                        if results is not None:
                            args += ["--volume", f"{results.resolve()}:{RESULTS_MOUNT}"]
                        for key, value in env.items():
                            args += ["--env", f"{key}={value}"]
                        args += [service, *junit.argv]
                        with deadline.enforced(lambda: self.docker.remove_container(name)):
                            code = self.docker.compose(project, *args, capture=False, check=False).returncode
                        timed_out = deadline.passed
                        if code != 0 and deps and not timed_out:
                            self._dependencies_gone(project, deps)
                finally:
                    self.down(project, service)
        if timed_out:
            code = TIMED_OUT
            self.reporter.warn(f"{service}: {_TIMED_OUT_LINE.format(timeout)}")
        report = _junit(results, service)
        seconds = time.monotonic() - start
        outcome = TestOutcome(
            service, code, seconds, project.name, report, plan.images, timed_out, junit.argv
        )
        self._report_missing_junit(outcome, results, junit)
        return outcome

    def _junit(self, plan: Plan, results: Path | None, addopts: str | None) -> Junit:
        if results is None:
            return Junit(plan.command.argv, {})
        junit = with_junit(plan.command.argv, plan.service, plan.entrypoint, addopts)
        if junit.note:
            self.reporter.step(plan.service, junit.note)
        return junit

    def _report_missing_junit(self, outcome: TestOutcome, results: Path | None, junit: Junit) -> None:
        if results is None or outcome.junit is not None or outcome.timed_out:
            return
        why = (
            (junit.note.split(":", 1)[0] + ", and no pytest wrote one") if junit.note else "pytest wrote none"
        )
        self.reporter.warn(f"{outcome.service}: no JUnit report in {results}: {why}")

    def serve(self, settings: Settings, service: str) -> int:
        """A service and its dependencies in the foreground until it exits or Ctrl-C; then all removed.
        It gets fresh volumes and networks of its own, as a test run does, and keeps its ports."""
        services = settings.compose_data.get("services") or {}
        if service not in services:
            raise ConfigError(_unknown(settings, service))
        images = self.images_for(settings, [service, *dependencies(services, service)])
        name = run_name("sc-run", service)
        isolation = isolate(settings.compose_data, service, project=name, contexts=_contexts(settings),
                            images={r.target: r.image for r in images}, keep_mounts=True,
                            publish_ports=True)  # fmt: skip
        for who, line in isolation.notes(settings.root, keep_mounts_hint=False):
            self.reporter.step(who, line)
        with compose_project(isolation.model, name) as project:
            self.reporter.step(service, f"starting (project {project.name}); Ctrl-C stops it")
            with _terminate_as_interrupt():
                try:
                    up = ["up", "--no-build", "--abort-on-container-exit", service]
                    return self.docker.compose(project, *up, capture=False, check=False).returncode
                except KeyboardInterrupt:
                    return 0  # Ctrl-C is how a server in the foreground is meant to stop
                finally:
                    self.down(project, service)

    # --- fingerprints, for --skip-passed ---------------------------------------------------------------
    def compose_fingerprint(self, settings: Settings, plan: Plan, env: Mapping[str, str | None]) -> str:
        """The run as it would be (its own compose model, with a name that is not the run's), the
        images' keys, the IDs of the images run as they are, the command and the environment."""
        assert plan.isolation is not None
        model = isolate(settings.compose_data, plan.service, project="<run>", contexts=_contexts(settings),
                        images={r.target: r.image for r in plan.images},
                        keep_mounts=plan.keep_mounts)  # fmt: skip
        for name, conf in model.model["services"].items():
            mounts = [v for v in conf.get("volumes") or [] if isinstance(v, dict) and v.get("type") == "bind"]
            if mounts:
                raise ConfigError(
                    f"--skip-passed: service {name!r} bind-mounts {mounts[0].get('source')}, which no key "
                    "covers; drop the option or the mount"
                )
        built = {r.target for r in plan.images}
        pulled = {}  # services that run an image as it is: its ID, since a tag can move
        for name, conf in model.model["services"].items():
            ref = conf.get("image")
            if name not in built and ref:
                info = self.docker.image_inspect(str(ref))
                pulled[name] = info.id if info else str(ref)
        compose = {"services": model.model, "images": pulled}
        return fingerprint(plan.images, compose, plan.command.argv, env)

    def plain_fingerprint(self, plan: Plan, options: Mapping[str, Any], env: Mapping[str, str | None]) -> str:
        return fingerprint(plan.images, options, plan.command.argv, env)

    def down(self, project: Compose, service: str) -> None:
        """Remove the run's containers, networks and volumes: ``down --volumes`` on the run's own project
        (whose volumes are all the run's), then any volume still labelled with the run's project.
        Neither Ctrl-C nor SIGTERM cuts it short."""
        with _uninterrupted():
            self.reporter.step(service, "removing the run's containers, networks and volumes")
            self.docker.compose(
                project, "down", "--volumes", "--remove-orphans", "--timeout", "5", check=False
            )
            self.docker.remove_labelled_volumes(f"{RUN_LABEL}={project.name}")

    def images_for(self, settings: Settings, services: Sequence[str]) -> list[Result]:
        """Resolve, through the cache, the image of every named service that compose would build."""
        out = []
        for name in services:
            target = settings.targets.get(name)
            if target is not None:
                tags = [target.image] if target.image else []
                out.append(self.resolver.resolve(target, tags=tags))
        return out

    # --- waiting for the dependencies -----------------------------------------------------------------
    def _up(self, project: Compose, deps: Sequence[str], wait_timeout: float) -> None:
        """Start the dependencies and wait, at most ``wait_timeout`` seconds, until each is running and,
        where it has a healthcheck, healthy. (Polled here rather than left to ``up --wait``, which was
        seen to return success while a dependency's healthcheck was still failing.) What fails is said
        with compose's or the engine's own words, after the service's last log lines."""
        up = self.docker.compose(project, "up", "--detach", "--no-build", *deps, check=False)
        deadline = time.monotonic() + wait_timeout
        while up.returncode == 0:
            problems = self._not_ready(project, deps)
            if not problems:
                return
            exited = any(p.exited for p in problems)
            if exited or time.monotonic() > deadline:
                last = self._show_logs(project, [p.service for p in problems])
                detail = "; ".join(_with_last_line(p, last) for p in problems)
                when = "" if exited else f" after {wait_timeout:.0f}s"
                raise ServicesNotReady(f"services not ready{when}: {detail}")
            time.sleep(0.25)
        said = compose_error(up.stderr) or f"exit {up.returncode}"
        problems = self._not_ready(project, deps)
        self._show_logs(project, [p.service for p in problems if p.state != "not created"])
        more = "; ".join(str(p) for p in problems if p.error and p.error not in said)
        raise ServicesNotReady(f"could not start {', '.join(deps)}: {said}" + (f"; {more}" if more else ""))

    def _not_ready(self, project: Compose, deps: Sequence[str]) -> list[NotReady]:
        rows = {str(row.get("Service")): row for row in self.docker.compose_ps(project)}
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
                log = self.docker.health_log(container) if health else ""
                error, code = "", None
                if state != "running":
                    details = self.docker.container_state(container)
                    error = str(details.get("Error") or "")
                    code = details.get("ExitCode", row.get("ExitCode"))
                exited = state in ("exited", "dead")
                problems.append(NotReady(service, health or state, log, exited, error, code))
        return problems

    def _dependencies_gone(self, project: Compose, deps: Sequence[str]) -> None:
        """After failed tests: a dependency that exited while they ran is said, with its last log lines
        (a healthcheck can pass while a database is still initialising, and the database die after)."""
        gone = [p for p in self._not_ready(project, deps) if p.exited]
        if gone:
            last = self._show_logs(project, [p.service for p in gone])
            for problem in gone:
                self.reporter.warn(f"{_with_last_line(problem, last)} while the tests ran")

    def _show_logs(self, project: Compose, services: Sequence[str]) -> dict[str, str]:
        """Show each service's last log lines; returns the last one of each."""
        last = {}
        for service in services:
            logs = ["logs", "--no-color", "--no-log-prefix", "--tail", str(LOG_LINES), service]
            done = self.docker.compose(project, *logs, check=False)
            lines = [line for line in _ANSI.sub("", done.stdout).splitlines() if line.strip()]
            if lines:
                last[service] = lines[-1].strip()
            shown = "\n".join(f"    {line}" for line in lines) if lines else "    (no output)"
            self.reporter.warn(
                f"{service}: its last log lines (docker compose logs --tail {LOG_LINES}):\n{shown}"
            )
        return last

    # --- without compose ----------------------------------------------------------------------------
    def run_plain(
        self,
        plan: Plan,
        *,
        results: Path | None = None,
        network: HostNetwork | None = None,
        env: Mapping[str, str | None] | None = None,
        tty: bool = False,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> TestOutcome:
        start = time.monotonic()
        (result,) = plan.images
        service = plan.service
        name = run_name("sc", service)
        options = ["--name", name, "--label", f"{LABEL_PREFIX}.run={name}"]
        if tty:
            options.append("-t")
        network = network or HostNetwork()
        if network.host_network:
            options += ["--network", "host"]
        for host in network.add_hosts:
            options += ["--add-host", f"{host}:host-gateway"]
        env = dict(env or {})
        addopts = env.get("PYTEST_ADDOPTS")
        if addopts is None and "PYTEST_ADDOPTS" in env:  # `-e PYTEST_ADDOPTS`: passed through
            addopts = os.environ.get("PYTEST_ADDOPTS")
        junit = self._junit(plan, results, addopts)
        env.update(junit.env)
        for key, value in env.items():
            options += ["--env", key if value is None else f"{key}={value}"]
        _prepare_results(results, service)
        if results is not None:
            options += ["--volume", f"{results.resolve()}:{RESULTS_MOUNT}"]
        self.reporter.step(service, f"running {shlex.join(junit.argv)} ({plan.command.origin})")
        deadline = _Deadline(timeout)
        with _terminate_as_interrupt():
            try:
                with deadline.enforced(lambda: self.docker.remove_container(name)):
                    code = self.docker.run_container(result.image, junit.argv, options)
            finally:
                with _uninterrupted():
                    self.docker.remove_container(name)
        if deadline.passed:
            code = TIMED_OUT
            self.reporter.warn(f"{service}: {_TIMED_OUT_LINE.format(timeout)}")
        report = _junit(results, service)
        seconds = time.monotonic() - start
        outcome = TestOutcome(service, code, seconds, name, report, [result], deadline.passed, junit.argv)
        self._report_missing_junit(outcome, results, junit)
        return outcome


def _with_last_line(problem: NotReady, last: Mapping[str, str]) -> str:
    """A dependency that exited, with the last line it logged (what a database says before it dies)."""
    said = last.get(problem.service)
    return f"{problem} (its last log line: {said})" if problem.exited and said else str(problem)


def compose_error(stderr: str) -> str:
    """What compose said went wrong: its ``Error …`` lines, else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower() or "failed" in line.lower()]
    return " | ".join(errors[-2:]) if errors else (lines[-1] if lines else "")


def run_name(prefix: str, service: str) -> str:
    """A name of the run's own, as compose takes project names (lowercase letters, digits, - and _)."""
    return f"{prefix}-{re.sub(r'[^a-z0-9_-]+', '-', service.lower())}-{uuid.uuid4().hex[:8]}"


def _unknown(settings: Settings, service: str) -> str:
    services = settings.compose_data.get("services") or {}
    hint = settings.profile_hint(service)  # a service an inactive profile hides: which one enables it
    return hint or f"unknown service {service!r}; services: {', '.join(sorted(services))}"


def _contexts(settings: Settings) -> list[Path]:
    return sorted({t.spec.context for t in settings.targets.values()})


def _configured(settings: Settings) -> list[str] | None:
    value = settings.tool.get("test-command")
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    if not value or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{settings.root / 'pyproject.toml'}: [tool.stagecache] test-command must be a "
                          'list of strings, e.g. ["poetry", "run", "pytest", "-v"]')  # fmt: skip
    return [str(v) for v in value]


def fingerprint(
    images: Sequence[Result], services: Mapping[str, Any], extra: Sequence[str], env: Mapping[str, Any]
) -> str:
    """What a test run's outcome depends on: image keys, service definitions, command, environment."""
    from .key.digest import canonical

    data = {
        "images": sorted(r.key for r in images),
        "services": services,
        "args": list(extra),
        "env": dict(sorted(env.items())),
    }
    return "sha256:" + hashlib.sha256(canonical(data)).hexdigest()


def _junit(results: Path | None, service: str) -> Path | None:
    if results is None:
        return None
    path = results / junit_name(service)
    return path if path.is_file() else None
