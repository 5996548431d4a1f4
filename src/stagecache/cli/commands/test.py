"""``stagecache test`` and ``stagecache run``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path

from ...errors import ConfigError
from ...project import choose
from ...project.values import parse_assignments, parse_duration
from ...testpass import Skipped, TestRequest, run_tests
from ...testrun import DEFAULT_TIMEOUT, MAX_TIMEOUT, HostNetwork, TestOutcome, TestRunner
from ..context import Context
from ..render import children_to_stderr, dump_json


def test(args: argparse.Namespace, ctx: Context) -> int:
    wait_timeout = wait_limit(args.wait_timeout)  # a bad limit is said before the engine is asked
    if args.timeout is not None:
        time_limit(args.timeout, {}, Path())
    app = ctx.app()
    use_store = not args.no_store
    runner = TestRunner(docker=app.engine, resolver=app.resolver(use_store=use_store), reporter=ctx.reporter)
    target = choose.test_service(app.settings, args.service)
    request = TestRequest(
        extra_args=args.extra,
        results=Path(args.results).resolve() if args.results else None,
        wait_timeout=wait_timeout,
        timeout=time_limit(args.timeout, app.settings.tool, app.settings.root),
        keep_mounts=args.keep_mounts,
        env=parse_assignments(args.env or [], "-e"),
        network=HostNetwork(host_network=args.network_host, add_hosts=args.add_host or ()),
        skip_passed=args.skip_passed,
        tty=sys.stdin.isatty() and sys.stdout.isatty() and not args.json,
    )
    # With --json, stdout carries the JSON alone: the tests' own output goes to stderr.
    with children_to_stderr(ctx.out) if args.json else nullcontext():
        outcome = run_tests(runner, app.settings, target, request, app.records() if use_store else None)
    if args.json:
        dump_json(outcome_json(outcome), ctx.out)
    elif isinstance(outcome, Skipped):
        report = f"; its report is in {outcome.junit}" if outcome.junit else ""
        print(f"{outcome.service}: skipped: passed on {outcome.passed_on} with the same images, services, "
              f"arguments and environment (--skip-passed){report}", file=ctx.out)  # fmt: skip
    else:
        verdict = "passed" if outcome.exit_code == 0 else f"failed (exit {outcome.exit_code})"
        if outcome.timed_out:
            verdict = f"timed out (exit {outcome.exit_code})"
        junit = f", report {outcome.junit}" if outcome.junit else ""
        print(f"{outcome.service}: tests {verdict} in {outcome.seconds:.1f}s{junit}", file=ctx.out)
    return 0 if isinstance(outcome, Skipped) else outcome.exit_code


def outcome_json(outcome: TestOutcome | Skipped) -> dict[str, object]:
    """The same keys for a run and a skip; what does not apply is null."""
    if isinstance(outcome, Skipped):
        return {"service": outcome.service, "outcome": "skipped", "exit_code": 0, "seconds": None,
                "junit": str(outcome.junit) if outcome.junit else None, "project": None, "images": [],
                "passed_on": outcome.passed_on}  # fmt: skip
    verdict = "passed" if outcome.exit_code == 0 else "failed"
    return {
        "service": outcome.service,
        "outcome": "timed out" if outcome.timed_out else verdict,
        "exit_code": outcome.exit_code,
        "seconds": round(outcome.seconds, 3),
        "junit": str(outcome.junit) if outcome.junit else None,
        "project": outcome.project,
        "images": [r.as_json() for r in outcome.images],
        "passed_on": None,
    }


def time_limit(given: str | None, tool: Mapping[str, object], root: Path) -> float:
    """``--timeout``, else ``[tool.stagecache] test-timeout``, else an hour: seconds, or 30m, 2h; more
    than 0 and at most 7 days (a longer one is no limit, and more than a timer can wait)."""
    if given is not None:
        where, text = "--timeout", given
    elif (value := tool.get("test-timeout")) is not None:
        where, text = f"{root / 'pyproject.toml'}: [tool.stagecache] test-timeout", str(value)
    else:
        return DEFAULT_TIMEOUT
    seconds = parse_duration(text, where)
    if not 0 < seconds <= MAX_TIMEOUT:
        raise ConfigError(f"{where} {text!r}: a time limit is more than 0 and at most 7d: write e.g. 900, "
                          "30m or 2h")  # fmt: skip
    return seconds


def wait_limit(seconds: int) -> int:
    """``--wait-timeout``: seconds, more than 0."""
    if seconds <= 0:
        raise ConfigError(f"--wait-timeout {seconds}: the seconds to wait for services are more than 0, "
                          "e.g. 120")  # fmt: skip
    return seconds


def run(args: argparse.Namespace, ctx: Context) -> int:
    app = ctx.app()
    target = choose.run_service(app.settings, args.service)
    resolver = app.resolver(use_store=not args.no_store)
    runner = TestRunner(docker=app.engine, resolver=resolver, reporter=ctx.reporter)
    return runner.serve(app.settings, target.name)
