"""`stagecache test` as the command line asks for it: the plain or the compose way, and skipped when an
identical run passed before (``--skip-passed``; passes are kept in the store's records)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .project.settings import Settings, Target
from .store.records import Records
from .testrun import HostNetwork, TestOutcome, TestRunner


@dataclass(frozen=True)
class Skipped:
    """A run not made: an identical one passed (``--skip-passed``)."""

    service: str
    passed_on: str  # when the identical run passed: YYYY-MM-DDTHH:MM:SSZ


@dataclass
class TestRequest:
    """What the command line asks of a test run."""

    extra_args: Sequence[str] = ()
    results: Path | None = None
    wait_timeout: int = 120
    env: Mapping[str, str | None] = field(default_factory=dict)  # None: passed through unset
    network: HostNetwork = field(default_factory=HostNetwork)  # without compose (or instead of it)
    skip_passed: bool = False
    tty: bool = False


def uses_compose(settings: Settings, request: TestRequest) -> bool:
    """Compose runs the tests when there is a compose file and no host networking was asked for."""
    network = request.network
    return bool(settings.compose_files) and not (network.host_network or network.add_hosts)


def run_fingerprint(runner: TestRunner, settings: Settings, target: Target, request: TestRequest) -> str:
    """What an identical rerun would have to match: the images' keys, services, arguments, environment."""
    if uses_compose(settings, request):
        return runner.compose_fingerprint(settings, target.name, request.extra_args, request.env)
    options = {"network-host": request.network.host_network, "add-host": list(request.network.add_hosts)}
    return runner.plain_fingerprint(target, options, request.extra_args, request.env)


def run_tests(
    runner: TestRunner, settings: Settings, target: Target, request: TestRequest, records: Records | None
) -> TestOutcome | Skipped:
    """Run ``target``'s tests, through compose when the project has it, else in ``docker run``.

    With ``request.skip_passed`` and ``records``, a run identical to one that passed is skipped, and a
    run that passes is recorded."""
    passed_key = run_fingerprint(runner, settings, target, request) if request.skip_passed else None
    if passed_key is not None and records is not None:
        earlier = records.passed(passed_key)
        if earlier is not None:
            return Skipped(target.name, str(earlier.get("when")))
    if uses_compose(settings, request):
        env = {k: v for k, v in request.env.items() if v is not None}
        outcome = runner.run_compose(settings, target.name, extra_args=request.extra_args,
                                     results=request.results, wait_timeout=request.wait_timeout,
                                     tty=request.tty, env=env)  # fmt: skip
    else:
        outcome = runner.run_plain(target, extra_args=request.extra_args, results=request.results,
                                   network=request.network, env=request.env, tty=request.tty)  # fmt: skip
    if passed_key is not None and records is not None and outcome.exit_code == 0:
        from .project.values import iso

        records.record_pass(passed_key, {"service": target.name, "when": iso(time.time())})
    return outcome
