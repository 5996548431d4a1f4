"""`stagecache test` on a project of the shape public FastAPI projects have (tests/projects/
fastapi-server-only): the server is the only service, Postgres has a healthcheck and a named volume
declared with `name:`, both publish their ports, the source is bind-mounted for development.

Most tests run with the user's own stack up beside them (`docker compose up -d`, their project name,
their volume, their published ports and container names): the test run must pass without touching any
of it, and leave nothing of its own behind.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker

FIXTURE = Path(__file__).resolve().parents[1] / "projects" / "fastapi-server-only"
RUN_LINE = "api: running pytest -q --junitxml=/stagecache-results/junit-api.xml (the command after --)"

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Project:
    """A copy of the fixture whose names (image, volume, container) are this module's own."""

    root: Path
    name: str  # the user's compose project name, and the prefix of every name in the compose file
    env: dict[str, str] = field(default_factory=dict)

    def stagecache(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)  # fmt: skip

    def compose(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The user's own `docker compose`, under their project name."""
        return subprocess.run(["docker", "compose", "-p", self.name, *args], cwd=self.root, env=self.env,
                              capture_output=True, text=True, timeout=900, check=False)  # fmt: skip

    def api(self, path: str, data: dict[str, str] | None = None) -> object:
        """A request to the user's own server, on the port they published."""
        body = json.dumps(data).encode() if data is not None else None
        request = urllib.request.Request(f"http://127.0.0.1:{self.env['API_PORT']}{path}", data=body,
                                         headers={"content-type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())


def copy_of_fixture(where: Path, name: str) -> Project:
    root = where / "fastapi-server-only"
    shutil.copytree(FIXTURE, root, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    compose = root / "compose.yaml"
    compose.write_text(compose.read_text().replace("fsonly", name))
    env = {**os.environ, "API_PORT": str(free_port()), "POSTGRES_PORT": str(free_port()),
           "STAGECACHE_STORE": str(where / "store")}  # fmt: skip
    return Project(root, name, env)


def context_files(root: Path) -> dict[str, tuple[int, int]]:
    """Every file of the build context, with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")
            if p.is_file() or p.is_dir()}  # fmt: skip


def run_project(stderr: str) -> str:
    marker = "(project "
    assert marker in stderr, stderr
    return stderr.split(marker, 1)[1].split(")", 1)[0]


def leftovers(engine: Docker, project: str) -> dict[str, list[str]]:
    found = {kind: ids for kind, ids in engine.project_leftovers(project).items() if ids}
    labelled = engine.runner(
        ["docker", "volume", "ls", "-q", "--filter", f"label=org.stagecache.run={project}"]
    )
    if labelled.stdout.split():
        found["labelled volumes"] = labelled.stdout.split()
    return found


def wait_for(check: object, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            assert callable(check)
            check()
            return
        except (OSError, AssertionError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@dataclass
class Beside:
    """The user's stack up, with a note of theirs in their database, and one test run made beside it."""

    project: Project
    containers: dict[str, str]  # the user's container IDs by name, before the test run
    volume_created: str  # when the user's named volume was created
    context_before: dict[str, tuple[int, int]]
    done: subprocess.CompletedProcess[str]
    results: Path


@pytest.fixture(scope="module")
def beside(engine: Docker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Beside]:
    name = f"fsonly-{uuid.uuid4().hex[:8]}"
    project = copy_of_fixture(tmp_path_factory.mktemp("beside"), name)
    try:
        up = project.compose("up", "-d", "--wait")
        assert up.returncode == 0, up.stderr[-3000:]
        wait_for(lambda: project.api("/health"))
        assert project.api("/notes", {"text": "the user's own note"}) == {
            "id": 1,
            "text": "the user's own note",
        }
        shutil.rmtree(project.root / "app" / "__pycache__", ignore_errors=True)  # their server wrote it
        before = context_files(project.root)
        ids = project.compose("ps", "--format", "{{.Name}} {{.ID}}").stdout.split()
        containers = dict(zip(ids[::2], ids[1::2], strict=True))
        volume = engine.runner(
            ["docker", "volume", "inspect", "--format", "{{.CreatedAt}}", f"{name}-db-data"]
        )
        results = project.root.parent / "results"
        done = project.stagecache(
            "test", "api", "--no-store", "--results", str(results), "--", "pytest", "-q"
        )
        yield Beside(project, containers, volume.stdout.strip(), before, done, results)
    finally:
        project.compose("down", "--timeout", "2")
        engine.runner(["docker", "volume", "rm", f"{name}-db-data"], check=False)
        engine.untag_repository(f"{name}-api")


def test_the_tests_run_in_place_of_the_server(beside: Beside) -> None:
    done = beside.done
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "3 passed" in done.stdout
    assert RUN_LINE in done.stderr.splitlines()
    suite = ET.parse(beside.results / "junit-api.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("3", "0", "0")


def test_the_users_volume_and_data_are_untouched(engine: Docker, beside: Beside) -> None:
    name = beside.project.name
    volume = engine.runner(["docker", "volume", "inspect", "--format", "{{.CreatedAt}}", f"{name}-db-data"])
    assert volume.stdout.strip() == beside.volume_created  # the same volume, not removed and made again
    assert beside.project.api("/notes") == [{"id": 1, "text": "the user's own note"}]
    # ... and the tests saw none of it: test_starts_from_an_empty_database passed on a fresh volume.
    assert f"api: fresh volumes for the run instead of db-data ({name}-db-data)" in beside.done.stderr


def test_the_users_containers_run_on_and_no_port_clashed(beside: Beside) -> None:
    project = beside.project
    after = project.compose("ps", "--format", "{{.Name}} {{.ID}} {{.State}}").stdout.split()
    assert dict(zip(after[::3], after[1::3], strict=True)) == beside.containers
    assert set(after[2::3]) == {"running"}
    assert f"{project.name}-db" in beside.containers  # its container_name was not taken by the run
    assert project.api("/health") == {"status": "ok"}  # still on the port the user published


def test_nothing_is_written_into_the_build_context(beside: Beside) -> None:
    assert context_files(beside.project.root) == beside.context_before
    line = ("api: not mounting ./app from the build context: the tests run the image's copy "
            "(--keep-mounts keeps them)")  # fmt: skip
    assert line in beside.done.stderr.splitlines()


def test_the_run_leaves_nothing_behind(engine: Docker, beside: Beside) -> None:
    assert leftovers(engine, run_project(beside.done.stderr)) == {}


def test_without_a_command_the_server_gives_way_to_pytest(beside: Beside, tmp_path: Path) -> None:
    done = beside.project.stagecache("test", "api", "--no-store", "--results", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = ("api: running python -m pytest --junitxml=/stagecache-results/junit-api.xml (the default; "
            "the service's command, uvicorn app.main:app --host 0.0.0.0 --port 8000 --reload, runs no "
            "tests)")  # fmt: skip
    assert line in done.stderr.splitlines()
    assert (tmp_path / "junit-api.xml").is_file()


def test_the_configured_test_command_runs(beside: Beside, tmp_path: Path) -> None:
    configured = copy_of_fixture(tmp_path, beside.project.name)
    configured.env = {**beside.project.env, "STAGECACHE_STORE": str(tmp_path / "store")}
    pyproject = configured.root / "pyproject.toml"
    table = '\n[tool.stagecache]\ntest-command = ["python", "-m", "pytest", "-q", "-k", "health"]\n'
    pyproject.write_text(pyproject.read_text() + table)
    done = configured.stagecache("test", "api", "--no-store", "--results", str(tmp_path / "results"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert ("api: running python -m pytest -q -k health --junitxml=/stagecache-results/junit-api.xml "
            "([tool.stagecache] test-command)") in done.stderr.splitlines()  # fmt: skip
    assert "1 passed, 2 deselected" in done.stdout


def test_a_run_that_never_ends_is_stopped_at_its_time_limit(engine: Docker, beside: Beside) -> None:
    start = time.monotonic()
    done = beside.project.stagecache("test", "api", "--no-store", "--timeout", "6", "--", "python", "-c",
                                     "import time; time.sleep(600)", timeout=120)  # fmt: skip
    assert done.returncode == 124, done.stderr[-3000:]
    assert time.monotonic() - start < 60
    assert ("warning: api: the run took longer than its time limit, 6s (--timeout, [tool.stagecache] "
            "test-timeout); stopped and removed") in done.stderr.splitlines()  # fmt: skip
    assert "api: tests timed out (exit 124)" in done.stdout
    assert leftovers(engine, run_project(done.stderr)) == {}


def test_skip_passed_gives_back_the_report_asked_through_pytest_addopts(
    beside: Beside, tmp_path: Path
) -> None:
    args = ("test", "api", "--skip-passed", "--results", str(tmp_path), "--", "sh", "-c", "pytest -q")
    first = beside.project.stagecache(*args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert ("api: `sh -c 'pytest -q'` is not a pytest command stagecache can add --junitxml to: a pytest it "
            "starts is asked for the report through PYTEST_ADDOPTS") in first.stderr.splitlines()  # fmt: skip
    report = (tmp_path / "junit-api.xml").read_text()
    (tmp_path / "junit-api.xml").unlink()
    again = beside.project.stagecache(*args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "api: skipped: passed on" in again.stdout
    assert f"its report is in {tmp_path / 'junit-api.xml'}" in again.stdout
    assert (tmp_path / "junit-api.xml").read_text() == report


def test_a_dependency_that_exits_is_said_with_its_own_words(
    engine: Docker, beside: Beside, tmp_path: Path
) -> None:
    broken = copy_of_fixture(tmp_path, beside.project.name)  # the same names as the user's stack
    broken.env = {**beside.project.env, "STAGECACHE_STORE": str(tmp_path / "store")}
    compose = broken.root / "compose.yaml"
    setting = '    command: ["postgres", "-c", "no_such_setting=1"]\n'
    compose.write_text(
        compose.read_text().replace("    image: postgres:15\n", f"    image: postgres:15\n{setting}")
    )
    done = broken.stagecache("test", "api", "--no-store", "--", "pytest", "-q")
    assert done.returncode == 1
    assert "db exited with code 1 (its last log line: " in done.stderr
    assert 'unrecognized configuration parameter "no_such_setting"' in done.stderr
    assert "warning: db: its last log lines (docker compose logs --tail 20):" in done.stderr
    assert leftovers(engine, run_project(done.stderr)) == {}
    assert beside.project.api("/notes") == [{"id": 1, "text": "the user's own note"}]


def test_a_dependency_that_cannot_start_is_said_in_the_engines_words(
    engine: Docker, beside: Beside, tmp_path: Path
) -> None:
    broken = copy_of_fixture(tmp_path, beside.project.name)
    broken.env = {**beside.project.env, "STAGECACHE_STORE": str(tmp_path / "store")}
    compose = broken.root / "compose.yaml"
    typo = '    entrypoint: ["/usr/local/bin/docker-entrypoint-typo.sh"]\n'
    compose.write_text(
        compose.read_text().replace("    image: postgres:15\n", f"    image: postgres:15\n{typo}")
    )
    done = broken.stagecache("test", "api", "--no-store", "--", "pytest", "-q")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("stagecache: error: could not start db: Error response from daemon: "), last
    assert "docker-entrypoint-typo.sh: no such file or directory" in last
    assert leftovers(engine, run_project(done.stderr)) == {}


def test_keep_mounts_keeps_the_source_mount(beside: Beside) -> None:
    """The control of test_nothing_is_written_into_the_build_context: with the mount kept, as `docker
    compose run` keeps it, the tests import the host's code and Python writes into the context."""
    cache = beside.project.root / "app" / "__pycache__"
    shutil.rmtree(cache, ignore_errors=True)
    done = beside.project.stagecache("test", "api", "--no-store", "--keep-mounts", "--", "pytest", "-q")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "not mounting" not in done.stderr
    assert cache.is_dir()
