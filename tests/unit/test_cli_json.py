"""`--json` on every command that reports something, with the tables' date format; driven through
`main()` with the fake engine (no daemon)."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from stagecache.cli import main
from stagecache.process import Completed
from tests.fakes import FakeEngine

DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
DOCKERFILE = "FROM python:3.11-slim AS prod\nCOPY app.py /app/\nFROM prod AS dev\nCOPY tests/ /tests/\n"
PYPROJECT = """\
[project]
name = "svc"
version = "1"
dependencies = ["fastapi"]
[project.optional-dependencies]
dev = ["pytest"]
"""


class Engine(FakeEngine):
    """The fake engine, with the packages check-prod finds in an image and a test container's exit."""

    def __init__(self) -> None:
        super().__init__()
        self.installed = [["fastapi", "0.110", "/usr/lib/python3/site-packages/fastapi-0.110.dist-info"]]
        self.test_exit = 0
        self.containers: list[list[str]] = []  # each test container's image and command

    def capture_in(self, image: str, entrypoint: str, command: Sequence[str]) -> Completed:
        installed = [] if image == self.BASE else self.installed  # the base image has none of them
        return Completed(["docker", "run", image], 0, json.dumps(installed) + "\n", "")

    def run_container(self, image: str, command: Sequence[str], options: Sequence[str]) -> int:
        self.containers.append([image, *command])
        return self.test_exit


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "svc"
    (root / "tests").mkdir(parents=True)
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "pyproject.toml").write_text(PYPROJECT)
    (root / "app.py").write_text("print(1)\n")
    (root / "tests" / "test_x.py").write_text("def test(): pass\n")
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STAGECACHE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)  # the commit tag, without git
    monkeypatch.chdir(tmp_path)  # the project is reached through -C
    return root


@pytest.fixture
def engine() -> Engine:
    return Engine()


def run(engine: Engine, project: Path, *argv: str) -> tuple[int, str]:
    """``stagecache -C PROJECT …`` from elsewhere; ``-f Dockerfile`` is the project's (-f is read
    from the working directory, as docker reads it)."""
    out = io.StringIO()
    argv = tuple(str(project / "Dockerfile") if word == "Dockerfile" else word for word in argv)
    code = main(["-C", str(project), *argv], out=out, engine=engine)
    return code, out.getvalue()


def as_json(engine: Engine, project: Path, *argv: str) -> tuple[int, Any]:
    code, text = run(engine, project, *argv, "--json")
    return code, json.loads(text)


def test_key_json_is_the_manifest(engine: Engine, project: Path) -> None:
    code, key = run(engine, project, "key", "-f", "Dockerfile", "dev")
    code, data = as_json(engine, project, "key", "-f", "Dockerfile", "dev")
    assert (code, data["target"], data["key"]) == (0, "dev", key.strip())
    assert {row[0] for row in data["manifest"]["files"]} >= {"app.py", "tests/test_x.py"}


def test_key_why_json_names_what_changed(engine: Engine, project: Path) -> None:
    code, data = as_json(engine, project, "key", "-f", "Dockerfile", "--why", "dev")
    assert (code, data["state"], data["last_key"], data["changes"]) == (0, "no record", None, None)
    assert run(engine, project, "build", "-f", "Dockerfile", "dev")[0] == 0
    code, data = as_json(engine, project, "key", "-f", "Dockerfile", "--why", "dev")
    assert (data["state"], data["key"], data["changes"]) == ("unchanged", data["last_key"], None)
    assert DATE.fullmatch(data["last_built"])
    (project / "app.py").write_text("print(2)\n")
    (project / "tests" / "test_y.py").write_text("def test(): pass\n")
    code, data = as_json(engine, project, "key", "-f", "Dockerfile", "--why", "dev")
    assert data["state"] == "changed"
    assert data["key"] != data["last_key"]
    assert data["changes"] == {"added": ["tests/test_y.py"], "removed": [], "modified": ["app.py (content)"],
                               "other": []}  # fmt: skip
    code, text = run(engine, project, "key", "-f", "Dockerfile", "--why", "dev")
    assert text.splitlines()[1:] == ["  + tests/test_y.py", "  ~ app.py (content)"]


def test_build_json(engine: Engine, project: Path) -> None:
    code, data = as_json(engine, project, "build", "-f", "Dockerfile", "prod", "dev")
    assert code == 0
    assert [(r["target"], r["outcome"]) for r in data] == [("prod", "built"), ("dev", "built")]
    assert f"svc-prod:{'a' * 40}" in data[0]["tags"]
    code, data = as_json(engine, project, "build", "-f", "Dockerfile", "--no-commit-tag", "dev")
    assert [(r["outcome"], r["tags"]) for r in data] == [("daemon", [])]


def test_check_prod_json_clean_and_not(engine: Engine, project: Path) -> None:
    code, data = as_json(engine, project, "check-prod", "-f", "Dockerfile")
    assert code == 0
    assert (data["target"], data["clean"], data["found"], data["installed_count"]) == ("prod", True, [], 1)
    assert data["dev_packages"]["names"] == ["pytest"]
    assert [i["target"] for i in data["images"]] == ["prod", "dev"]  # prod, and the dev target's size
    assert all(isinstance(i["size"], int) for i in data["images"])
    engine.installed.append(["pytest", "8.1", "/usr/lib/python3/site-packages/pytest-8.1.dist-info"])
    code, data = as_json(engine, project, "check-prod", "-f", "Dockerfile")
    assert (code, data["clean"]) == (1, False)
    location = "/usr/lib/python3/site-packages/pytest-8.1.dist-info"
    assert [{k: f[k] for k in ("name", "version", "location", "verdict")} for f in data["found"]] == [
        {"name": "pytest", "version": "8.1", "location": location, "verdict": "leak"}]  # fmt: skip
    code, text = run(engine, project, "check-prod", "-f", "Dockerfile")
    assert code == 1
    assert "prod: 1 dev-only package(s) in the prod image:" in text


def test_images_prune_json_dates_match_the_text(engine: Engine, project: Path) -> None:
    for version in ("1", "2", "3"):
        (project / "app.py").write_text(f"print({version})\n")
        assert run(engine, project, "build", "-f", "Dockerfile", "--no-store", "prod")[0] == 0
    code, text = run(engine, project, "images", "prune", "--keep", "1", "--dry-run")
    built = re.findall(r"built (\S+)\)", text)
    code, data = as_json(engine, project, "images", "prune", "--keep", "1")
    assert (code, data["dry_run"], data["keep"]) == (0, False, 1)
    assert [(u["target"], u["removed"]) for u in data["untagged"]] == [("prod", True), ("prod", True)]
    assert [u["created"] for u in data["untagged"]] == built
    assert all(DATE.fullmatch(d) for d in built)
    code, data = as_json(engine, project, "images", "prune", "--keep", "1")
    assert data["untagged"] == []


def test_test_json_run_then_skipped(engine: Engine, project: Path) -> None:
    argv = ["test", "-f", "Dockerfile", "dev", "--skip-passed"]
    code, data = as_json(engine, project, *argv)
    assert (code, data["outcome"], data["exit_code"], data["passed_on"]) == (0, "passed", 0, None)
    assert [r["target"] for r in data["images"]] == ["dev"]
    code, data = as_json(engine, project, *argv)
    assert (code, data["outcome"], data["images"]) == (0, "skipped", [])
    assert DATE.fullmatch(data["passed_on"])
    assert set(data) == {
        "service",
        "outcome",
        "exit_code",
        "seconds",
        "junit",
        "project",
        "images",
        "passed_on",
    }
    assert len(engine.containers) == 1  # the second run was skipped
    code, text = run(engine, project, *argv)
    assert text == (f"dev: skipped: passed on {data['passed_on']} with the same images, services, arguments "
                    "and environment (--skip-passed)\n")  # fmt: skip


def test_test_json_failed(engine: Engine, project: Path) -> None:
    engine.test_exit = 3
    code, text = run(engine, project, "test", "-f", "Dockerfile", "dev", "--json", "--", "-x", "--json")
    data = json.loads(text)
    assert (code, data["outcome"], data["exit_code"]) == (3, "failed", 3)
    assert engine.containers[0][-2:] == ["-x", "--json"]  # what follows -- is the tests', --json too


def test_watch_status_json_with_none_running(engine: Engine, project: Path) -> None:
    assert as_json(engine, project, "watch", "status") == (0, [])
