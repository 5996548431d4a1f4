"""Run a project's tests inside its dev image, with real services, and always clean up.

With a compose file: the test service's images come through the cache (compose never builds them),
and the run gets a compose project of its own (:mod:`.testenv`): fresh volumes, fresh networks, no
published ports, no bind mount of a build context into a built service, nothing of the user's mounted
writable (a host directory becomes a fresh volume). Its dependencies start and are waited on until
healthy (what fails is said with compose's or the engine's words and the service's last log lines),
the tests run in a one-off container of the test service, JUnit XML comes out into a host directory,
and ``compose down --volumes`` on the run's own project removes what the run created, after a pass, a
failure, a time-out or Ctrl-C alike. Without one (seed 2's shape), the tests run in ``docker run`` and
reach a database on the host through ``--network host`` or an added host entry for the host's gateway.

Which command runs and how its report is asked for: :mod:`.testcmd`; waiting for the dependencies:
:mod:`.testwait`.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .build import Resolver, Result
from .engine.base import Compose, Engine
from .errors import ConfigError
from .progress import Reporter, Silent
from .project.settings import Settings, Target
from .refs import LABEL_PREFIX
from .testcmd import RESULTS_MOUNT, Junit, TestCommand, choose_command, junit_name, with_junit
from .testenv import RUN_LABEL, Isolation, compose_project, dependencies, isolate
from .testwait import Deadline, Dependencies, ServicesNotReady, terminate_as_interrupt, uninterrupted

DEFAULT_TIMEOUT = 3600.0  # seconds: a run that never finishes ends after an hour
MAX_TIMEOUT = 7 * 86400.0  # seconds: the longest time limit a run takes (--timeout, test-timeout)
TIMED_OUT = 124  # the exit code of a run ended by its time limit (as timeout(1) says it)
_TIMED_OUT_LINE = (
    "the run took longer than its time limit, {:g}s (--timeout, [tool.stagecache] test-timeout); "
    "stopped and removed"
)


def _prepare_results(results: Path | None, service: str) -> None:
    """The JUnit directory: made if absent (readable and writable by anyone, for the container's user,
    often not root, to write the report); an existing directory's mode is left as it is — the report
    is then written by a user with access to it, or the run says why none came."""
    if results is not None:
        if not results.is_dir():
            results.mkdir(parents=True)
            os.chmod(results, 0o777)  # noqa: S103 - ours, made just now, for the container's user
        (results / junit_name(service)).unlink(missing_ok=True)  # never pass off an old report as new


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


@dataclass
class HostNetwork:
    """How a container reaches services on the host (seed 2's shape)."""

    host_network: bool = False
    add_hosts: Sequence[str] = ()  # names that resolve to the host's gateway inside the container


# --- which command runs ---------------------------------------------------------------------------------
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

    @property
    def dependencies(self) -> Dependencies:
        return Dependencies(self.docker, self.reporter)

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
        deadline = Deadline(timeout)
        code, timed_out = 1, False
        with compose_project(isolation.model, plan.project) as project:
            _prepare_results(results, service)
            with terminate_as_interrupt():
                try:
                    if deps:
                        self.reporter.step(service, f"starting {', '.join(deps)} (project {project.name})")
                        try:
                            self.dependencies.up(project, deps, min(wait_timeout, deadline.left()))
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
                            self.dependencies.gone(project, deps)
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
            with terminate_as_interrupt():
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
        with uninterrupted():
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
        deadline = Deadline(timeout)
        with terminate_as_interrupt():
            try:
                with deadline.enforced(lambda: self.docker.remove_container(name)):
                    code = self.docker.run_container(result.image, junit.argv, options)
            finally:
                with uninterrupted():
                    self.docker.remove_container(name)
        if deadline.passed:
            code = TIMED_OUT
            self.reporter.warn(f"{service}: {_TIMED_OUT_LINE.format(timeout)}")
        report = _junit(results, service)
        seconds = time.monotonic() - start
        outcome = TestOutcome(service, code, seconds, name, report, [result], deadline.passed, junit.argv)
        self._report_missing_junit(outcome, results, junit)
        return outcome


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
