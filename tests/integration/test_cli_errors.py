"""Bad input ends with one line on stderr naming the problem and the fix, and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker

COMPOSE = """\
services:
  api:
    build:
      context: .
      target: prod
  api-tests:
    build:
      context: .
      target: dev
"""
DOCKERFILE = "FROM python:3.11-slim AS prod\nCOPY app.py /app/\nFROM prod AS dev\nCOPY tests/ /tests/\n"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "docker-compose.yml").write_text(COMPOSE)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    (tmp_path / "app.py").write_text("print(1)\n")
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests/test_x.py").write_text("def test(): pass\n")
    return tmp_path


def stagecache(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stagecache", *args],
        cwd=cwd,
        env={**os.environ, "STAGECACHE_STORE": str(cwd / ".store"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_usage_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("stagecache: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_target_lists_the_real_ones(engine: Docker, project: Path) -> None:
    assert_usage_error(stagecache("key", "nope", cwd=project), "unknown target 'nope'", "api, api-tests")


def test_dockerfile_syntax_error_names_file_and_line(engine: Docker, project: Path) -> None:
    (project / "Dockerfile").write_text(DOCKERFILE + "FROBNICATE now\n")
    assert_usage_error(
        stagecache("key", "api", cwd=project), "Dockerfile:5", "unknown instruction FROBNICATE"
    )


def test_missing_copy_source_is_named(engine: Docker, project: Path) -> None:
    (project / "app.py").unlink()
    assert_usage_error(stagecache("key", "api", cwd=project), "Dockerfile:2", "'app.py' not found")


def test_missing_context(engine: Docker, project: Path) -> None:
    (project / "docker-compose.yml").write_text(COMPOSE.replace("context: .", "context: ./nowhere"))
    done = stagecache("key", "api", cwd=project)
    assert_usage_error(done, "nowhere")


def test_missing_dockerfile(engine: Docker, tmp_path: Path) -> None:
    assert_usage_error(stagecache("build", "-f", "Nope.Dockerfile", cwd=tmp_path), "Nope.Dockerfile")


def test_engine_not_reachable(project: Path) -> None:
    done = stagecache("build", "api", cwd=project, env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    assert_usage_error(done, "Docker engine is not reachable", "start Docker Engine")


def test_store_not_writable(engine: Docker, project: Path) -> None:
    (project / "blocker").write_text("a file, not a directory")
    done = stagecache("build", "api", "--store", str(project / "blocker/store"), cwd=project)
    assert_usage_error(done, "not writable", "--store")


def test_unknown_config_key_suggests_the_closest(engine: Docker, project: Path) -> None:
    (project / "pyproject.toml").write_text('[tool.stagecache]\nstore-max-sise = "1GB"\n')
    assert_usage_error(
        stagecache("key", "api", cwd=project), "pyproject.toml", "did you mean 'store-max-size'"
    )


def test_bad_compose_file(engine: Docker, project: Path) -> None:
    (project / "docker-compose.yml").write_text("services:\n  api: [unclosed\n")
    assert_usage_error(stagecache("key", "api", cwd=project), "docker-compose.yml")
