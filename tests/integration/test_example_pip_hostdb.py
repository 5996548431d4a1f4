"""examples/pip-hostdb end to end: seed 2's shape, tests in the dev image against a PostgreSQL on the host."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "pip-hostdb"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def host_database() -> str:
    """The host's PostgreSQL (outside Docker), installed and started by the project's script."""
    done = subprocess.run(
        ["bash", str(ROOT / "scripts/host-postgres")], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"scripts/host-postgres failed: {done.stderr.strip()[-500:]}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture
def example(tmp_path: Path, run_id: str, engine: Docker) -> Iterator[Path]:
    copy = tmp_path / "pip-hostdb"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    yield copy
    engine.untag_repository(f"stagecache-test-{run_id}")  # by tag: the example's own tags stay


def stagecache(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "STAGECACHE_STORE": str(cwd.parent / "store"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip


def test_tests_reach_the_host_database_over_the_host_network(
    engine: Docker, example: Path, host_database: str, run_id: str, tmp_path: Path
) -> None:
    done = stagecache("test", "dev", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}",
                      "--network-host", "-e", "DATABASE_URL", "--results", str(tmp_path / "results"),
                      cwd=example, env={"DATABASE_URL": host_database})  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    suite = ET.parse(tmp_path / "results/junit-dev.xml").getroot()
    suite = suite if suite.tag == "testsuite" else suite[0]
    assert int(suite.get("tests", "0")) >= 5
    assert int(suite.get("failures", "0")) == 0


def test_tests_reach_the_host_database_through_an_added_host(
    engine: Docker, example: Path, host_database: str, run_id: str
) -> None:
    url = host_database.replace("@127.0.0.1:", "@postgresdb:")
    done = stagecache("test", "dev", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}",
                      "--add-host", "postgresdb", "-e", f"DATABASE_URL={url}", cwd=example)  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert " passed" in done.stdout


def test_failing_test_gives_a_failing_exit_code(
    engine: Docker, example: Path, host_database: str, run_id: str
) -> None:
    (example / "tests/test_broken.py").write_text("def test_broken():\n    raise SystemError('boom')\n")
    done = stagecache("test", "dev", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}",
                      "--network-host", "-e", f"DATABASE_URL={host_database}", "--", "-k", "broken",
                      cwd=example)  # fmt: skip
    assert done.returncode == 1
    assert "1 failed" in done.stdout
    left = engine.runner(["docker", "ps", "-a", "-q", "--filter", "label=org.stagecache.run"]).stdout
    running_here = [c for c in left.split() if c]
    names = engine.runner(["docker", "ps", "-a", "--format", "{{.Names}}"]).stdout
    assert not any(n.startswith("sc-dev-") for n in names.split()), running_here


def test_check_prod_uses_the_dev_requirements(engine: Docker, example: Path, run_id: str) -> None:
    done = stagecache(
        "check-prod", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}", cwd=example
    )
    assert done.returncode == 0, done.stderr
    assert "requirements/dev.txt (with their -r includes)" in done.stdout
    dirty = stagecache("check-prod", "dev", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}",
                       cwd=example)  # fmt: skip
    assert dirty.returncode == 1
    assert "pytest" in dirty.stdout


def test_skip_passed_skips_only_an_identical_rerun(
    engine: Docker, example: Path, host_database: str, run_id: str
) -> None:
    args = ["test", "dev", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}", "--network-host",
            "-e", f"DATABASE_URL={host_database}", "--skip-passed"]  # fmt: skip
    first = stagecache(*args, cwd=example)
    assert first.returncode == 0, first.stderr[-2000:]
    assert " passed" in first.stdout
    again = stagecache(*args, cwd=example)
    assert again.returncode == 0
    assert "skipped: passed on" in again.stdout
    assert " passed in " not in again.stdout  # pytest did not run
    other_args = stagecache(*args, "--", "-k", "counter", cwd=example)
    assert "skipped" not in other_args.stdout
    (example / "tests/test_new.py").write_text("def test_new():\n    pass\n")  # a new dev image key
    changed = stagecache(*args, cwd=example)
    assert "skipped" not in changed.stdout
    assert changed.returncode == 0
