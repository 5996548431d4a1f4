"""Run a project's tests inside its dev image, with real services, and always clean up.

With a compose file: the test service's images come through the cache (compose never builds them),
its dependencies start under a compose project name of our own (two runs never collide) and are
waited on until healthy, the tests run in a one-off container of the test service, JUnit XML comes out
into a host directory, and ``compose down --volumes`` removes everything, after a pass, a failure or
Ctrl-C alike. Without one (seed 2's shape), the tests run in ``docker run`` and reach a database on
the host through ``--network host`` or an added host entry for the host's gateway.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import shlex
import signal
import tempfile
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

RESULTS_MOUNT = "/stagecache-results"


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


@dataclass(frozen=True)
class NotReady:
    service: str
    state: str  # "starting", "unhealthy", "exited", …
    last_check: str  # the healthcheck's last exit code and output
    exited: bool

    def __str__(self) -> str:
        return f"{self.service} is {self.state} ({self.last_check or 'no healthcheck output'})"


@dataclass
class HostNetwork:
    """How a container reaches services on the host (seed 2's shape)."""

    host_network: bool = False
    add_hosts: Sequence[str] = ()  # names that resolve to the host's gateway inside the container


def pytest_like(command: Sequence[str]) -> bool:
    """Whether a command runs pytest, so that a JUnit report can be asked of it."""
    if not command:
        return False
    first = posixpath.basename(command[0])
    if first in ("pytest", "py.test"):
        return True
    return first.startswith("python") and list(command[1:3]) == ["-m", "pytest"]


def junit_name(service: str) -> str:
    return f"junit-{service}.xml"


def with_results(command: Sequence[str], service: str, results: Path | None) -> list[str]:
    if results is None or not pytest_like(command):
        return list(command)
    return [*command, f"--junitxml={RESULTS_MOUNT}/{junit_name(service)}"]


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


def dependencies(services: Mapping[str, Any], service: str) -> list[str]:
    """Every service ``service`` depends on, directly or not, sorted."""
    seen: set[str] = set()
    todo = [service]
    while todo:
        for dep in services.get(todo.pop(), {}).get("depends_on") or {}:
            if dep not in seen and dep != service:
                seen.add(dep)
                todo.append(dep)
    return sorted(seen)


@dataclass
class TestRunner:
    docker: Engine
    resolver: Resolver
    reporter: Reporter = field(default_factory=Silent)

    # --- compose projects ---------------------------------------------------------------------------
    def run_compose(
        self,
        settings: Settings,
        service: str,
        *,
        extra_args: Sequence[str] = (),
        results: Path | None = None,
        wait_timeout: int = 120,
        tty: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> TestOutcome:
        start = time.monotonic()
        services = settings.compose_data.get("services") or {}
        if service not in services:
            raise ConfigError(f"unknown service {service!r}; services: {', '.join(sorted(services))}")
        deps = dependencies(services, service)
        code = 1
        with self.project(settings, f"sc-{service}", [service, *deps]) as (project, images):
            command = self._command(services[service], settings.targets.get(service), images)
            _prepare_results(results, service)
            with _terminate_as_interrupt():
                try:
                    if deps:
                        self.reporter.step(service, f"starting {', '.join(deps)} (project {project.name})")
                        self._up(project, deps, wait_timeout)
                    self.reporter.step(service, f"running {' '.join(command + list(extra_args))}")
                    args = ["run", "--rm", "--no-deps", "--label", f"{LABEL_PREFIX}.run={project.name}"]
                    if not tty:
                        args.append("-T")
                    if results is not None:
                        args += ["--volume", f"{results.resolve()}:{RESULTS_MOUNT}"]
                    for name, value in (env or {}).items():
                        args += ["--env", f"{name}={value}"]
                    args += [service, *with_results(command, service, results), *extra_args]
                    code = self.docker.compose(project, *args, capture=False, check=False).returncode
                finally:
                    self.down(project, service)
        return TestOutcome(
            service, code, time.monotonic() - start, project.name, _junit(results, service), images
        )

    @contextlib.contextmanager
    def project(
        self, settings: Settings, prefix: str, services: Sequence[str]
    ) -> Iterator[tuple[Compose, list[Result]]]:
        """A compose project of our own whose services run exactly the images the cache gave.

        The images come through the cache; a small override file pins each built service to its key
        tag, so compose neither builds nor picks up a tag another run has moved meanwhile.
        """
        images = self.images_for(settings, services)
        pins = {"services": {r.target: {"image": r.image} for r in images}}
        with tempfile.TemporaryDirectory(prefix="stagecache-compose-") as tmp:
            override = Path(tmp) / "stagecache.override.json"  # JSON is YAML
            override.write_text(json.dumps(pins))
            files = (*settings.compose_files, override)
            yield Compose(files, settings.root, f"{prefix}-{uuid.uuid4().hex[:8]}"), images

    def serve(self, settings: Settings, service: str) -> int:
        """A service and its dependencies in the foreground until it exits or Ctrl-C; then all removed."""
        services = settings.compose_data.get("services") or {}
        with self.project(settings, f"sc-run-{service}", [service, *dependencies(services, service)]) as (
            project,
            _,
        ):
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
    def compose_fingerprint(
        self, settings: Settings, service: str, extra: Sequence[str], env: Mapping[str, str | None]
    ) -> str:
        services = settings.compose_data.get("services") or {}
        names = [service, *dependencies(services, service)]
        for name in names:
            mounts = [v for v in services.get(name, {}).get("volumes") or [] if v.get("type") == "bind"]
            if mounts:
                raise ConfigError(
                    f"--skip-passed: service {name!r} bind-mounts {mounts[0].get('source')}, which no key "
                    "covers; drop the option or the mount"
                )
        images = self.images_for(settings, names)
        built = {r.target for r in images}
        pulled = {}  # services that run an image as it is: its ID, since a tag can move
        for name in names:
            ref = services.get(name, {}).get("image")
            if name not in built and ref:
                info = self.docker.image_inspect(str(ref))
                pulled[name] = info.id if info else str(ref)
        definitions = {n: services.get(n) for n in names}
        return fingerprint(images, {"services": definitions, "images": pulled}, extra, env)

    def plain_fingerprint(
        self, target: Target, options: Mapping[str, Any], extra: Sequence[str], env: Mapping[str, str | None]
    ) -> str:
        return fingerprint([self.resolver.resolve(target)], options, extra, env)

    def down(self, project: Compose, service: str) -> None:
        """Remove the project's containers, networks and volumes; neither Ctrl-C nor SIGTERM cuts it short."""
        with _uninterrupted():
            self.reporter.step(service, "removing containers, networks and volumes")
            self.docker.compose(
                project, "down", "--volumes", "--remove-orphans", "--timeout", "5", check=False
            )

    def images_for(self, settings: Settings, services: Sequence[str]) -> list[Result]:
        """Resolve, through the cache, the image of every named service that compose would build."""
        out = []
        for name in services:
            target = settings.targets.get(name)
            if target is not None:
                tags = [target.image] if target.image else []
                out.append(self.resolver.resolve(target, tags=tags))
        return out

    def _command(self, conf: Mapping[str, Any], target: Target | None, images: list[Result]) -> list[str]:
        command = conf.get("command")
        if isinstance(command, str):
            return shlex.split(command)
        if command:
            return [str(c) for c in command]
        image = next((r.image for r in images if target is not None and r.target == target.name), None)
        image = image or conf.get("image")
        info = self.docker.image_inspect(image) if image else None
        return list(info.cmd) if info else []

    def _up(self, project: Compose, deps: Sequence[str], wait_timeout: int) -> None:
        """Start the dependencies and wait, at most ``wait_timeout`` seconds, until each is running and,
        where it has a healthcheck, healthy. (Polled here rather than left to ``up --wait``, which was
        seen to return success while a dependency's healthcheck was still failing.)"""
        up = self.docker.compose(project, "up", "--detach", "--no-build", *deps, check=False)
        deadline = time.monotonic() + wait_timeout
        while up.returncode == 0:
            problems = self._not_ready(project, deps)
            if not problems:
                return
            if time.monotonic() > deadline or any(p.exited for p in problems):
                detail = "; ".join(str(p) for p in problems)
                raise ServicesNotReady(f"services not ready after {wait_timeout}s: {detail}")
            time.sleep(0.25)
        last = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else f"exit {up.returncode}"
        detail = "; ".join(str(p) for p in self._not_ready(project, deps)) or last
        raise ServicesNotReady(f"could not start {', '.join(deps)}: {detail}")

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
                log = self.docker.health_log(str(row.get("Name", ""))) if health else ""
                problems.append(NotReady(service, health or state, log, exited=state in ("exited", "dead")))
        return problems

    # --- without compose ----------------------------------------------------------------------------
    def run_plain(
        self,
        target: Target,
        *,
        extra_args: Sequence[str] = (),
        results: Path | None = None,
        network: HostNetwork | None = None,
        env: Mapping[str, str | None] | None = None,
        tty: bool = False,
    ) -> TestOutcome:
        start = time.monotonic()
        result = self.resolver.resolve(target)
        info = self.docker.image_inspect(result.image)
        command = list(info.cmd) if info else []
        name = f"sc-{target.name}-{uuid.uuid4().hex[:8]}"
        options = ["--name", name, "--label", f"{LABEL_PREFIX}.run={name}"]
        if tty:
            options.append("-t")
        network = network or HostNetwork()
        if network.host_network:
            options += ["--network", "host"]
        for host in network.add_hosts:
            options += ["--add-host", f"{host}:host-gateway"]
        for key, value in (env or {}).items():
            options += ["--env", key if value is None else f"{key}={value}"]
        _prepare_results(results, target.name)
        if results is not None:
            options += ["--volume", f"{results.resolve()}:{RESULTS_MOUNT}"]
        self.reporter.step(target.name, f"running {' '.join(command + list(extra_args))}")
        with _terminate_as_interrupt():
            try:
                code = self.docker.run_container(
                    result.image, [*with_results(command, target.name, results), *extra_args], options
                )
            finally:
                with _uninterrupted():
                    self.docker.remove_container(name)
        return TestOutcome(
            target.name, code, time.monotonic() - start, name, _junit(results, target.name), [result]
        )


def fingerprint(
    images: Sequence[Result], services: Mapping[str, Any], extra: Sequence[str], env: Mapping[str, Any]
) -> str:
    """What a test run's outcome depends on: image keys, service definitions, arguments, environment."""
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
