"""check-prod end to end on the fixture projects in tests/projects/checkprod-*, each the shape of a real
public FastAPI project:

- checkprod-unbuilt-stage: one compose service ``api`` with ``target: dev``; the ``prod`` stage is built by
  no service; a uv.lock says what is dev;
- checkprod-second-dockerfile: ``project/Dockerfile`` for compose, ``project/Dockerfile.prod`` (a builder,
  then an unnamed last stage) for prod; ``requirements-dev.txt`` ends in ``-r requirements.txt``;
- checkprod-leak: Poetry 1 (``category = "dev"``), ``target: ${TARGET:-development}`` beside a
  ``release`` stage that leaks a dev package and installs a build tool needing another.

Each runs ``python -m stagecache check-prod`` in a copy of its project, with a store of its own: the
store must hold no entry afterwards, and the prod image no tag but its key tag. Images are named for the
test run (``--repository``) and removed after.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagecache.engine.docker import Docker
from stagecache.refs import is_key_ref
from stagecache.store.directory import DirectoryStore

PROJECTS = Path(__file__).resolve().parent.parent / "projects"

pytestmark = pytest.mark.slow


class Run:
    def __init__(self, root: Path, repository: str, engine: Docker) -> None:
        self.root = root
        self.repository = repository
        self.engine = engine
        self.store = root.parent / "store"

    def check_prod(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, "STAGECACHE_STORE": str(self.store), **(env or {})}
        argv = [sys.executable, "-m", "stagecache", "check-prod", "--repository", self.repository, *args]
        return subprocess.run(argv, cwd=self.root, env=full_env, capture_output=True, text=True, timeout=900,
                              check=False)  # fmt: skip

    def json(self, *args: str, code: int = 0) -> dict[str, Any]:
        done = self.check_prod("--json", *args)
        assert done.returncode == code, done.stdout[-3000:] + done.stderr[-3000:]
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def store_entries(self) -> list[str]:
        """The targets' entries (a target's stage images, ``target/stage``, are entries of their own)."""
        if not self.store.exists():
            return []
        return [e.key for e in DirectoryStore(self.store).entries() if "/" not in e.target]

    def tags_of(self, image: str) -> list[str]:
        info = self.engine.image_inspect(image)
        assert info is not None, image
        return sorted(info.repo_tags)


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path, run_id: str, engine: Docker) -> Iterator[Run]:
    name = request.param
    copy = tmp_path / name
    shutil.copytree(PROJECTS / name, copy)
    repository = f"stagecache-test-{run_id}"
    yield Run(copy, repository, engine)
    engine.untag_repository(repository)
    engine.untag(f"{name}-app:latest")  # compose's name for checkprod-leak's service, when built as a target


@pytest.mark.parametrize("project", ["checkprod-unbuilt-stage"], indirect=True)
def test_a_prod_stage_that_no_service_builds(project: Run) -> None:
    data = project.json()
    chosen = data["chosen"]
    assert (chosen["target"], chosen["stage"], chosen["configured"], chosen["stored"]) == (
        "Dockerfile:prod", "prod", False, False)  # fmt: skip
    assert chosen["reason"] == ("stage 'prod' of Dockerfile: a prod stage name that no target builds; "
                                "built for this check only, not stored")  # fmt: skip
    assert data["clean"] is True
    assert (data["dev_packages"]["source"], data["dev_packages"]["names"]) == (
        "uv.lock (reached only from dev groups)", ["iniconfig"])  # fmt: skip
    assert [i["target"] for i in data["images"]] == ["Dockerfile:prod", "api"]  # and the dev image's size
    assert project.store_entries() == []  # neither image was stored
    assert project.tags_of(data["image"]) == [data["image"]]  # the key tag, nothing else
    api_image = data["images"][1]["image"]
    assert all(is_key_ref(t) for t in project.tags_of(api_image))  # not even compose's <project>-api

    text = project.check_prod()
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"prod image: {chosen['reason']}"
    assert lines[-1].startswith("Dockerfile:prod: clean: none of the ")
    assert project.store_entries() == []


@pytest.mark.parametrize("project", ["checkprod-second-dockerfile"], indirect=True)
def test_the_unnamed_last_stage_of_a_second_dockerfile(project: Run) -> None:
    data = project.json()
    chosen = data["chosen"]
    assert (chosen["target"], chosen["stage"], chosen["configured"]) == (
        "project/Dockerfile.prod",
        None,
        False,
    )
    assert chosen["reason"].startswith(
        "the unnamed last stage of project/Dockerfile.prod, a second Dockerfile"
    )
    assert data["clean"] is True
    assert data["dev_packages"]["names"] == ["iniconfig"]
    assert data["dev_packages"]["files"] == ["requirements-dev.txt"]  # read in the prod image's context
    assert project.store_entries() == []
    assert project.tags_of(data["image"]) == [data["image"]]
    assert (project.root / "project/Dockerfile.prod").read_text().startswith("FROM")  # left as it was


@pytest.mark.parametrize("project", ["checkprod-leak"], indirect=True)
def test_a_leaked_dev_package_fails_and_a_tool_is_told_apart(project: Run) -> None:
    data = project.json(code=1)
    assert data["chosen"]["reason"].startswith("stage 'release' of Dockerfile: a prod stage name")
    assert data["dev_packages"]["source"] == 'poetry.lock (category = "dev", Poetry 1)'
    found = {f["name"]: f for f in data["found"]}
    assert list(found) == ["iniconfig"]
    assert found["iniconfig"]["version"] == "2.0.0"  # what is installed, not the lock's 1.1.1
    assert found["iniconfig"]["why"] == "installed by pip on request; the lock pins 1.1.1 for dev"
    others = {f["name"]: f for f in data["not_counted"]}
    assert list(others) == ["packaging"]
    assert others["packaging"]["verdict"] == "tool"
    assert others["packaging"]["why"].startswith(
        "installed with build 1.2.2.post1, which Dockerfile:12 installs with pip; the lock pins 21.3 for dev"
    )
    assert others["packaging"]["version"] != "21.3"
    assert project.store_entries() == []

    text = project.check_prod()
    assert text.returncode == 1
    assert "Dockerfile:release: 1 dev-only package(s) in the prod image:" in text.stdout
    assert "  iniconfig 2.0.0  (" in text.stdout
    assert "not counted: 1 package(s)" in text.stdout

    # the release target through compose (TARGET=release): a configured target, stored (and tagged with
    # compose's image name) as a build of it is
    released = project.check_prod("--json", env={"TARGET": "release"})
    assert released.returncode == 1, released.stderr
    chosen = json.loads(released.stdout)["chosen"]
    assert (chosen["target"], chosen["configured"]) == ("app", True)
    assert chosen["reason"] == "service app: it builds stage 'release'"
    assert len(project.store_entries()) == 1
    assert project.engine.image_inspect(f"{project.root.name}-app:latest") is not None
