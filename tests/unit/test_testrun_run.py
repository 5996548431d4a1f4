"""A compose test run driven through the fake engine: the command compose runs, the run's own compose
file, the time limit, what a failed dependency reports, and --skip-passed giving the report back."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, cast

import pytest

from stagecache import testpass, testrun
from stagecache.build import Resolver, Result
from stagecache.engine.base import Compose
from stagecache.errors import ConfigError
from stagecache.key.spec import TargetSpec
from stagecache.process import Completed
from stagecache.project.settings import Settings, Target
from stagecache.store.records import Records
from stagecache.testcmd import RESULTS_MOUNT
from stagecache.testenv import RUN_LABEL
from stagecache.testpass import Skipped, run_tests
from stagecache.testrun import TIMED_OUT
from stagecache.testwait import ServicesNotReady
from tests.fakes import FakeEngine
from tests.unit.test_testrun_isolation import MODEL

ROOT = Path("/project")


class Resolved:
    """The resolver's face the test runner uses: every target is a hit."""

    def resolve(self, target: Target, **options: Any) -> Result:
        name = target.name
        return Result(name, f"sha256:{name}", f"shop-{name}:sc-1", "sha256:1", "daemon", 0.0, [])


class Reporter:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def step(self, target: str, message: str) -> None:
        self.lines.append(f"{target}: {message}")

    def warn(self, message: str) -> None:
        self.lines.append(f"warning: {message}")

    def transfer(self, label: str, done: int, total: int | None) -> None:
        pass


class Engine(FakeEngine):
    """The fake engine, keeping the run's compose model; its test container passes and, given a results
    volume, writes a JUnit report there."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[dict[str, Any]] = []
        self.projects: list[Compose] = []
        self.run_args: list[str] = []
        self.removed: list[str] = []
        self.logs = "FATAL:  data directory has wrong ownership\n"
        self.run_blocks = threading.Event()
        self.blocking = False

    def compose(self, project: Compose, *args: str, capture: bool = True, check: bool = True) -> Completed:
        self.models.append(json.loads(project.files[0].read_text()))
        self.projects.append(project)
        done = super().compose(project, *args, capture=capture, check=check)
        if args[0] == "logs":
            return done._replace(stdout=self.logs)
        if args[0] == "run":
            self.run_args = list(args)
            if self.blocking:
                self.run_blocks.wait(30)
                return done._replace(returncode=137)
            for arg in args:
                if arg.endswith(f":{RESULTS_MOUNT}"):
                    host = Path(arg.rsplit(":", 1)[0])
                    (host / "junit-api.xml").write_text('<testsuite tests="3" failures="0"/>')
        return done

    def remove_container(self, name: str) -> None:
        super().remove_container(name)
        self.removed.append(name)
        self.run_blocks.set()


def settings(tool: dict[str, Any] | None = None, *, binds: bool = True) -> Settings:
    spec = TargetSpec("api", ROOT, ROOT / "Dockerfile")
    targets = {"api": Target(spec, "shop-api", "shop-api:latest", "api")}
    out = Settings(ROOT, targets, [], tool or {})
    out.compose_files = [ROOT / "compose.yaml"]
    out.compose_data = MODEL if binds else without_host_binds(MODEL)
    return out


def without_host_binds(model: dict[str, Any]) -> dict[str, Any]:
    """The model without the bind mounts that stay in a run (--skip-passed refuses those)."""
    out: dict[str, Any] = json.loads(json.dumps(model))
    for conf in out["services"].values():
        mounts = conf.get("volumes", [])
        conf["volumes"] = [v for v in mounts if v["type"] != "bind" or v["source"] == "/project/app"]
    return out


def runner(engine: Engine, reporter: Reporter | None = None) -> testrun.TestRunner:
    return testrun.TestRunner(
        docker=engine, resolver=cast(Resolver, Resolved()), reporter=reporter or Reporter()
    )


def compose_calls(engine: Engine) -> list[str]:
    return [call for call in engine.calls if call.startswith(("compose", "volume"))]


def test_the_command_replaces_the_servers_and_everything_runs_in_the_runs_own_project() -> None:
    engine, reporter = Engine(), Reporter()
    test = runner(engine, reporter)
    plan = test.plan_compose(settings(), "api", words=["pytest", "-q"])
    outcome = test.run_compose(settings(), plan)
    project = plan.project
    assert outcome.exit_code == 0
    assert compose_calls(engine) == [
        "compose up --detach --no-build db",
        f"compose run --rm --no-deps --name {project}-tests --label {RUN_LABEL}={project} -T api pytest -q",
        "compose down --volumes --remove-orphans --timeout 5",
        f"volume rm {RUN_LABEL}={project}",
    ]
    assert {p.files for p in engine.projects} == {engine.projects[0].files}  # one file, the run's own
    assert engine.models[0]["volumes"]["db-data"]["labels"][RUN_LABEL] == project
    assert "ports" not in engine.models[0]["services"]["db"]
    assert "api: running pytest -q (the command after --)" in reporter.lines
    assert "api: not mounting ./app from the build context: the tests run the image's copy " \
           "(--keep-mounts keeps them)" in reporter.lines  # fmt: skip


def test_without_a_command_the_server_gives_way_to_python_m_pytest() -> None:
    engine, reporter = Engine(), Reporter()
    test = runner(engine, reporter)
    test.run_compose(settings(), test.plan_compose(settings(), "api"))
    assert engine.run_args[-4:] == ["api", "python", "-m", "pytest"]
    assert ("api: running python -m pytest (the default; the service's command, uvicorn app.main:app --host "
            "0.0.0.0 --reload, runs no tests)") in reporter.lines  # fmt: skip


def test_the_configured_command_with_results_gets_its_junitxml(tmp_path: Path) -> None:
    engine, reporter = Engine(), Reporter()
    test = runner(engine, reporter)
    config = settings({"test-command": ["poetry", "run", "pytest", "-v"]})
    outcome = test.run_compose(config, test.plan_compose(config, "api"), results=tmp_path / "r")
    report = f"--junitxml={RESULTS_MOUNT}/junit-api.xml"
    assert engine.run_args[-6:] == ["api", "poetry", "run", "pytest", "-v", report]
    assert outcome.junit == tmp_path / "r" / "junit-api.xml"
    assert not [line for line in reporter.lines if "JUnit" in line]


def test_a_command_pytest_cannot_be_added_to_is_asked_through_pytest_addopts(tmp_path: Path) -> None:
    engine, reporter = Engine(), Reporter()
    test = runner(engine, reporter)
    plan = test.plan_compose(settings(), "api", words=["make", "test"])
    test.run_compose(settings(), plan, results=tmp_path / "r", env={"PYTEST_ADDOPTS": "-p no:randomly"})
    assert f"PYTEST_ADDOPTS=-p no:randomly --junitxml={RESULTS_MOUNT}/junit-api.xml" in engine.run_args
    assert engine.run_args[-3:] == ["api", "make", "test"]
    assert any("`make test` is not a pytest command" in line for line in reporter.lines)


def test_a_missing_report_is_said(tmp_path: Path) -> None:
    engine, reporter = Engine(), Reporter()
    engine.compose = FakeEngine.compose.__get__(engine)  # type: ignore[method-assign]  # writes no report
    test = runner(engine, reporter)
    test.run_compose(
        settings(), test.plan_compose(settings(), "api", words=["make", "test"]), results=tmp_path
    )
    assert reporter.lines[-1] == (
        f"warning: api: no JUnit report in {tmp_path}: `make test` is not a pytest command stagecache can "
        "add --junitxml to, and no pytest wrote one"
    )


def test_a_run_past_its_time_limit_is_stopped_torn_down_and_said() -> None:
    engine, reporter = Engine(), Reporter()
    engine.blocking = True
    test = runner(engine, reporter)
    plan = test.plan_compose(settings(), "api", words=["pytest"])
    outcome = test.run_compose(settings(), plan, timeout=0.2)
    assert (outcome.exit_code, outcome.timed_out) == (TIMED_OUT, True)
    assert engine.removed[0] == f"{plan.project}-tests"  # the test container was stopped
    assert "compose down --volumes --remove-orphans --timeout 5" in engine.calls
    assert reporter.lines[-1] == ("warning: api: the run took longer than its time limit, 0.2s (--timeout, "
                                  "[tool.stagecache] test-timeout); stopped and removed")  # fmt: skip


def test_a_dependency_that_exits_shows_its_last_log_lines() -> None:
    engine, reporter = Engine(), Reporter()
    engine.ps_answers = ["compose-ps-exited.json"]
    test = runner(engine, reporter)
    model = {**MODEL, "services": {**MODEL["services"]}}
    model["services"]["broken"] = {"image": "python:3.11-slim"}
    model["services"]["api"] = {**model["services"]["api"], "depends_on": {"db": {}, "broken": {}}}
    config = settings()
    config.compose_data = model
    with pytest.raises(
        ServicesNotReady,
        match=r"^services not ready: broken exited with code 3 \(its last log line: FATAL:  data directory "
        r"has wrong ownership\)$",
    ):
        test.run_compose(config, test.plan_compose(config, "api", words=["pytest"]))
    assert ("warning: broken: its last log lines (docker compose logs --tail 20):\n"
            "    FATAL:  data directory has wrong ownership") in reporter.lines  # fmt: skip
    assert "compose logs --no-color --no-log-prefix --tail 20 broken" in engine.calls
    assert "compose down --volumes --remove-orphans --timeout 5" in engine.calls


def test_a_dependency_the_engine_could_not_start_says_the_engines_words() -> None:
    engine, reporter = Engine(), Reporter()
    message = (
        "driver failed programming external connectivity: Bind for 0.0.0.0:5432 failed: port is already "
    )
    message += "allocated"
    engine.up_error = f" Container sc-db-1  Starting\nError response from daemon: {message}\n"
    recorded = (Path(__file__).parents[1] / "fixtures/engine/compose-ps-exited.json").read_text()
    created = [json.loads(line) for line in recorded.splitlines() if line.strip()]
    row = {**created[1], "State": "created", "Health": "", "Status": "Created"}

    def ps(project: Compose) -> list[dict[str, Any]]:
        return [row]

    engine.compose_ps = ps  # type: ignore[method-assign]
    engine.container_states = {row["Name"]: {"Status": "created", "ExitCode": 128, "Error": message}}
    test = runner(engine, reporter)
    with pytest.raises(ServicesNotReady) as raised:
        test.run_compose(settings(), test.plan_compose(settings(), "api", words=["pytest"]))
    assert str(raised.value) == f"could not start db: Error response from daemon: {message}"
    assert any(line.startswith("warning: db: its last log lines") for line in reporter.lines)


def test_skip_passed_gives_the_report_of_the_run_it_skips(tmp_path: Path) -> None:
    engine, records = Engine(), Records(tmp_path / "store")
    results = tmp_path / "results"
    request = testpass.TestRequest(extra_args=["pytest"], results=results, skip_passed=True)
    target = settings(binds=False).targets["api"]
    first = run_tests(runner(engine), settings(binds=False), target, request, records)
    assert isinstance(first, testrun.TestOutcome)
    assert first.exit_code == 0
    report = (results / "junit-api.xml").read_text()
    (results / "junit-api.xml").unlink()
    again = run_tests(runner(engine), settings(binds=False), target, request, records)
    assert isinstance(again, Skipped)
    assert again.junit == results / "junit-api.xml"
    assert again.junit.read_text() == report
    assert sum(call.startswith("compose run") for call in engine.calls) == 1


def test_a_pass_without_a_report_does_not_stand_in_for_a_run_asked_for_one(tmp_path: Path) -> None:
    engine, records, reporter = Engine(), Records(tmp_path / "store"), Reporter()
    target = settings(binds=False).targets["api"]
    without = testpass.TestRequest(extra_args=["pytest"], skip_passed=True)
    run_tests(runner(engine), settings(binds=False), target, without, records)
    assert isinstance(run_tests(runner(engine), settings(binds=False), target, without, records), Skipped)
    asked = testpass.TestRequest(extra_args=["pytest"], skip_passed=True, results=tmp_path / "r")
    outcome = run_tests(runner(engine, reporter), settings(binds=False), target, asked, records)
    assert isinstance(outcome, testrun.TestOutcome)
    assert outcome.junit is not None
    assert any("kept no JUnit report; running it again for --results" in line for line in reporter.lines)


def test_skip_passed_needs_the_same_command(tmp_path: Path) -> None:
    engine, records = Engine(), Records(tmp_path / "store")
    target = settings(binds=False).targets["api"]
    run_tests(
        runner(engine),
        settings(binds=False),
        target,
        testpass.TestRequest(extra_args=["pytest"], skip_passed=True),
        records,
    )
    request = testpass.TestRequest(extra_args=["pytest", "-k", "x"], skip_passed=True)
    other = run_tests(runner(engine), settings(binds=False), target, request, records)
    assert isinstance(other, testrun.TestOutcome)


def test_serve_keeps_ports_but_gets_fresh_volumes() -> None:
    engine = Engine()
    runner(engine).serve(settings(), "api")
    model = engine.models[0]
    assert model["services"]["api"]["ports"][0]["published"] == "8000"
    assert "name" not in model["volumes"]["db-data"]
    assert "container_name" not in model["services"]["db"]


def test_a_dependency_that_dies_while_the_tests_run_is_said_after_them() -> None:
    engine, reporter = Engine(), Reporter()
    model = {**MODEL, "services": {**MODEL["services"]}}
    model["services"]["broken"] = {"image": "python:3.11-slim"}
    model["services"]["api"] = {**model["services"]["api"], "depends_on": {"db": {}, "broken": {}}}
    config = settings()
    config.compose_data = model
    healthy = (Path(__file__).parents[1] / "fixtures/engine/compose-ps-healthy.json").read_text()
    db = [json.loads(line) for line in healthy.splitlines() if line.strip()]
    broken = {"Service": "broken", "Name": "sc-broken-1", "State": "running", "Health": ""}
    answers = [[*db, broken], [*db, {**broken, "State": "exited", "ExitCode": 3}]]  # up, then after the tests

    def compose(project: Compose, *args: str, capture: bool = True, check: bool = True) -> Completed:
        done = Engine.compose(engine, project, *args, capture=capture, check=check)
        return done._replace(returncode=1) if args[0] == "run" else done

    engine.compose = compose  # type: ignore[method-assign]
    engine.compose_ps = lambda project: answers.pop(0)  # type: ignore[method-assign]
    test = runner(engine, reporter)
    outcome = test.run_compose(config, test.plan_compose(config, "api", words=["pytest"]))
    assert outcome.exit_code == 1
    assert reporter.lines[-2] == (
        "warning: broken exited with code 3 (its last log line: FATAL:  data directory has wrong ownership) "
        "while the tests ran"
    )


def test_a_service_an_inactive_profile_hides_says_which_profile() -> None:
    config = settings()
    config.hidden_services = lambda: {"worker": ("jobs",)}
    with pytest.raises(ConfigError, match=r"service 'worker' is in profile 'jobs', which is not active"):
        runner(Engine()).plan_compose(config, "worker")
    with pytest.raises(ConfigError, match=r"unknown service 'nope'; services: adminer, api, db"):
        runner(Engine()).plan_compose(config, "nope")
