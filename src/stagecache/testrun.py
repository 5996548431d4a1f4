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
import os
import posixpath
import signal
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import Settings, Target
from .docker import LABEL_PREFIX, Compose, Docker
from .errors import ConfigError, ExitCode, StagecacheError
from .progress import Reporter, Silent
from .resolve import Resolver, Result

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


def with_results(command: Sequence[str], service: str, results: Path | None) -> list[str]:
    if results is None or not pytest_like(command):
        return list(command)
    return [*command, f"--junitxml={RESULTS_MOUNT}/junit-{service}.xml"]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI runner cancelling the job) takes the same clean-up path as Ctrl-C."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _uninterrupted() -> Iterator[None]:
    """Keep a second Ctrl-C from cutting the clean-up short."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _prepare_results(results: Path | None) -> None:
    if results is not None:
        results.mkdir(parents=True, exist_ok=True)
        os.chmod(results, 0o777)  # noqa: S103 - the container's user (often not root) writes the report here


@dataclass
class TestRunner:
    docker: Docker
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
        project = Compose(
            tuple(settings.compose_files), settings.root, f"sc-{service}-{uuid.uuid4().hex[:8]}"
        )
        deps = sorted(services[service].get("depends_on") or {})
        images = self.images_for(settings, [service, *deps])
        command = self._command(services[service], settings.targets.get(service), images)
        _prepare_results(results)
        code = 1
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
                with _uninterrupted():
                    self.reporter.step(service, "removing containers, networks and volumes")
                    self.docker.compose(project, "down", "--volumes", "--remove-orphans", "--timeout", "5",
                                        check=False)  # fmt: skip
        return TestOutcome(
            service, code, time.monotonic() - start, project.name, _junit(results, service), images
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
            return command.split()
        if command:
            return [str(c) for c in command]
        image = next((r.image for r in images if target is not None and r.target == target.name), None)
        image = image or conf.get("image")
        info = self.docker.image_inspect(image) if image else None
        return list(info.cmd) if info else []

    def _up(self, project: Compose, deps: Sequence[str], wait_timeout: int) -> None:
        up = self.docker.compose(
            project, "up", "--detach", "--no-build", "--wait", "--wait-timeout", str(wait_timeout), *deps,
            check=False,
        )  # fmt: skip
        if up.returncode == 0:
            return
        problems = []
        for row in self.docker.compose_ps(project):
            name = str(row.get("Name", ""))
            health = str(row.get("Health", ""))
            if (health and health != "healthy") or row.get("State") not in ("running", None):
                problems.append(f"{row.get('Service', name)} is {health or row.get('State')}"
                                f" ({self.docker.health_log(name) or 'no healthcheck output'})")  # fmt: skip
        last = up.stderr.strip().splitlines()[-1] if up.stderr.strip() else f"exit {up.returncode}"
        detail = "; ".join(problems) or last
        raise ServicesNotReady(f"services not ready after {wait_timeout}s: {detail}")

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
        _prepare_results(results)
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
                    self.docker.runner([self.docker.binary, "rm", "--force", name], check=False)
        return TestOutcome(
            target.name, code, time.monotonic() - start, name, _junit(results, target.name), [result]
        )


def fingerprint(
    images: Sequence[Result], services: Mapping[str, Any], extra: Sequence[str], env: Mapping[str, Any]
) -> str:
    """What a test run's outcome depends on: image keys, service definitions, arguments, environment."""
    from .key import canonical

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
    path = results / f"junit-{service}.xml"
    return path if path.is_file() else None
