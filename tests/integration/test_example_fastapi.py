"""examples/fastapi-poetry end to end: through stagecache, and through plain compose as seed 1 shows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "fastapi-poetry"

pytestmark = pytest.mark.slow


@pytest.fixture
def example(tmp_path: Path, run_id: str, engine: Docker) -> Iterator[Path]:
    """A copy of the example whose images get names of this test run (removed afterwards)."""
    copy = tmp_path / "fastapi-poetry"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache", ".venv"))
    compose = copy / "docker-compose.yml"
    compose.write_text(compose.read_text().replace("fastapi-poetry-example:", f"stagecache-test-{run_id}:"))
    yield copy
    engine.untag_repository(f"stagecache-test-{run_id}")  # by tag: the example's own tags stay


def stagecache(*args: str, cwd: Path, **kwargs: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAGECACHE_STORE": str(cwd.parent / "store")}
    return subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)  # fmt: skip


def leftovers(engine: Docker, project: str) -> dict[str, list[str]]:
    return {kind: ids for kind, ids in engine.project_leftovers(project).items() if ids}


def projects_of_run(stderr: str) -> str:
    marker = "(project "
    assert marker in stderr, stderr
    return stderr.split(marker, 1)[1].split(")", 1)[0]


def test_stagecache_test_passes_and_cleans_up(engine: Docker, example: Path, tmp_path: Path) -> None:
    done = stagecache("test", "api-tests", "--results", str(tmp_path / "results"), cwd=example)
    assert done.returncode == 0, done.stdout + done.stderr
    report = ET.parse(tmp_path / "results/junit-api-tests.xml").getroot()
    suite = report if report.tag == "testsuite" else report[0]
    assert int(suite.get("tests", "0")) >= 10
    assert int(suite.get("failures", "0")) == 0
    assert leftovers(engine, projects_of_run(done.stderr)) == {}

    again = stagecache("build", "--json", "--no-commit-tag", "api-tests", cwd=example)
    assert json.loads(again.stdout)[0]["outcome"] == "daemon"  # the test run's image came through the cache


def test_failing_test_fails_the_run_and_cleans_up(engine: Docker, example: Path) -> None:
    (example / "tests/test_fails.py").write_text("def test_fails():\n    assert 1 == 2\n")
    done = stagecache("test", "api-tests", "--", "-x", "-q", cwd=example)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 failed" in done.stdout
    assert leftovers(engine, projects_of_run(done.stderr)) == {}


def test_sigint_during_test_leaves_nothing_behind(engine: Docker, example: Path) -> None:
    (example / "tests/test_slow.py").write_text("import time\n\ndef test_slow():\n    time.sleep(120)\n")
    env = {**os.environ, "STAGECACHE_STORE": str(example.parent / "store")}
    proc = subprocess.Popen([sys.executable, "-m", "stagecache", "test", "api-tests", "--", "-k", "slow"],
                            cwd=example, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    project = ""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and not project:
        fmt = '{{.Label "org.stagecache.run"}} {{.Label "com.docker.compose.service"}}'
        running = engine.runner(["docker", "ps", "--filter", "label=org.stagecache.run", "--format", fmt])
        for line in running.stdout.splitlines():
            name, _, service = line.partition(" ")
            if service == "api-tests" and name.startswith("sc-api-tests-"):
                project = name
        time.sleep(0.5)
    assert project, "the test container never started"
    time.sleep(1)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert leftovers(engine, project) == {}, err


def test_unhealthy_dependency_times_out_clearly(engine: Docker, example: Path) -> None:
    compose = example / "docker-compose.yml"
    text = compose.read_text().replace("pg_isready -h 127.0.0.1 -U app -d app", "echo never-ready; exit 1")
    compose.write_text(text)
    done = stagecache(
        "test", "api-tests", "--wait-timeout", "8", cwd=example
    )  # the helper's timeout ends a hang
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert "not ready after 8s" in last
    assert "db is starting" in last or "db is unhealthy" in last
    assert "never-ready" in last  # the healthcheck's own output
    assert leftovers(engine, projects_of_run(done.stderr)) == {}


def test_check_prod_passes_for_prod_and_fails_for_dev(engine: Docker, example: Path) -> None:
    done = stagecache("check-prod", cwd=example)
    assert done.returncode == 0, done.stderr
    assert "clean" in done.stdout
    assert "api-server" in done.stdout
    assert "api-tests" in done.stdout  # the dev image's size is shown beside
    dirty = stagecache("check-prod", "api-tests", cwd=example)
    assert dirty.returncode == 1
    assert "pytest" in dirty.stdout


def test_seed_one_with_plain_compose(engine: Docker, example: Path, run_id: str) -> None:
    """Seed 1's demonstration, with docker compose alone."""
    compose = ["docker", "compose", "-p", f"sc-seed1-{run_id}", "--project-directory", str(example)]
    env = {**os.environ, "API_PORT": str(free_port())}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *args], env=env, capture_output=True, text=True, timeout=900, check=False
        )

    try:
        built = run("build")
        assert built.returncode == 0, built.stderr[-2000:]
        tests = run("run", "--rm", "-T", "api-tests")
        assert tests.returncode == 0, tests.stdout[-2000:]
        assert " passed" in tests.stdout
        no_pytest = run("run", "--rm", "-T", "api-server", "pytest")
        assert no_pytest.returncode != 0
        assert "executable file not found" in no_pytest.stderr + no_pytest.stdout
        up = run("up", "-d", "--wait", "api-server")
        assert up.returncode == 0, up.stderr[-2000:]
        assert health(int(env["API_PORT"])) == 200
    finally:
        run("down", "--volumes", "--remove-orphans", "--timeout", "5")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(port: int, deadline_seconds: float = 30) -> int:
    deadline = time.monotonic() + deadline_seconds
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=3) as response:
                return int(response.status)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def test_run_serves_until_ctrl_c_and_cleans_up(engine: Docker, example: Path) -> None:
    port = free_port()
    env = {**os.environ, "STAGECACHE_STORE": str(example.parent / "store"), "API_PORT": str(port)}
    proc = subprocess.Popen([sys.executable, "-m", "stagecache", "run", "api-server"], cwd=example, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    try:
        assert health(port, deadline_seconds=600) == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode in (0, 130), err
    assert leftovers(engine, projects_of_run(err)) == {}
