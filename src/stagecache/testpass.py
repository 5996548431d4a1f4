"""`stagecache test` as the command line asks for it: the plain or the compose way, and skipped when an
identical run passed before (``--skip-passed``; passes are kept in the store's records, with the run's
JUnit report when it made one, so that a skipped run gives the report back)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .project.settings import Settings, Target
from .store.records import Records
from .testcmd import junit_name
from .testrun import DEFAULT_TIMEOUT, HostNetwork, Plan, TestOutcome, TestRunner


@dataclass(frozen=True)
class Skipped:
    """A run not made: an identical one passed (``--skip-passed``)."""

    service: str
    passed_on: str  # when the identical run passed: YYYY-MM-DDTHH:MM:SSZ
    junit: Path | None = None  # the report of that run, written again


@dataclass
class TestRequest:
    """What the command line asks of a test run."""

    extra_args: Sequence[str] = ()  # the words after --: a command, or options for the default one
    results: Path | None = None
    wait_timeout: int = 120
    timeout: float = DEFAULT_TIMEOUT
    env: Mapping[str, str | None] = field(default_factory=dict)  # None: passed through unset
    network: HostNetwork = field(default_factory=HostNetwork)  # without compose (or instead of it)
    skip_passed: bool = False
    tty: bool = False
    keep_mounts: bool = False


def uses_compose(settings: Settings, request: TestRequest) -> bool:
    """Compose runs the tests when there is a compose file and no host networking was asked for."""
    network = request.network
    has_compose = bool(settings.compose_files or settings.compose_data.get("services"))
    return has_compose and not (network.host_network or network.add_hosts)


def plan(runner: TestRunner, settings: Settings, target: Target, request: TestRequest) -> Plan:
    if uses_compose(settings, request):
        return runner.plan_compose(
            settings, target.name, words=request.extra_args, keep_mounts=request.keep_mounts
        )
    return runner.plan_plain(settings, target, words=request.extra_args)


def run_fingerprint(runner: TestRunner, settings: Settings, request: TestRequest, chosen: Plan) -> str:
    """What an identical rerun would have to match: the images' keys, services, command, environment."""
    if uses_compose(settings, request):
        return runner.compose_fingerprint(settings, chosen, request.env)
    options = {"network-host": request.network.host_network, "add-host": list(request.network.add_hosts)}
    return runner.plain_fingerprint(chosen, options, request.env)


def run_tests(
    runner: TestRunner, settings: Settings, target: Target, request: TestRequest, records: Records | None
) -> TestOutcome | Skipped:
    """Run ``target``'s tests, through compose when the project has it, else in ``docker run``.

    With ``request.skip_passed`` and ``records``, a run identical to one that passed is skipped (and
    its JUnit report written again), and a run that passes is recorded with its report. A pass kept
    without a report does not stand in for a run asked for one (``--results``): that run is made."""
    chosen = plan(runner, settings, target, request)
    passed_key = run_fingerprint(runner, settings, request, chosen) if request.skip_passed else None
    if passed_key is not None and records is not None:
        skipped = _skip(records.passed(passed_key), target.name, request.results, runner)
        if skipped is not None:
            return skipped
    if uses_compose(settings, request):
        env = {k: v for k, v in request.env.items() if v is not None}
        outcome = runner.run_compose(settings, chosen, results=request.results, env=env, tty=request.tty,
                                     wait_timeout=request.wait_timeout, timeout=request.timeout)  # fmt: skip
    else:
        outcome = runner.run_plain(chosen, results=request.results, network=request.network, env=request.env,
                                   tty=request.tty, timeout=request.timeout)  # fmt: skip
    if passed_key is not None and records is not None and outcome.exit_code == 0:
        from .project.values import iso

        info: dict[str, object] = {"service": target.name, "when": iso(time.time())}
        if outcome.junit is not None:
            info["junit"] = outcome.junit.read_text(encoding="utf-8", errors="replace")
        records.record_pass(passed_key, info)
    return outcome


def _skip(
    earlier: Mapping[str, object] | None, service: str, results: Path | None, runner: TestRunner
) -> Skipped | None:
    """The skip an earlier pass allows, with its report written again; None: run."""
    if earlier is None:
        return None
    report = earlier.get("junit")
    if results is not None and not isinstance(report, str):
        runner.reporter.step(service, f"an identical run passed on {earlier.get('when')} but kept no JUnit "
                                      "report; running it again for --results")  # fmt: skip
        return None
    junit = None
    if results is not None and isinstance(report, str):
        results.mkdir(parents=True, exist_ok=True)
        junit = results / junit_name(service)
        junit.write_text(report, encoding="utf-8")
    return Skipped(service, str(earlier.get("when")), junit)
