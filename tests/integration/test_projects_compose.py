"""Compose read exactly as compose reads it, on the fixture projects in tests/projects/compose-*:

- compose-override: compose.override.yaml (read by compose by itself) changes the dev target's build
  arg, and the key follows it;
- compose-file-env: `COMPOSE_FILE=compose.yaml:compose.ci.yaml` adds a service and changes a build arg;
- compose-profiles: a service behind a profile is a target with `--profile`/`COMPOSE_PROFILES`, and a
  hint naming the profile without;
- compose-extra-hosts: `build.extra_hosts` reach the RUN steps: the image stagecache builds holds what
  `docker compose build`'s holds.

Each test copies its project to a folder of its own (its name is the compose project's, so the images'
names are the test's) and removes the images it made.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagecache.cli import main
from stagecache.engine.docker import Docker
from stagecache.project.compose_files import discover

PROJECTS = Path(__file__).resolve().parent.parent / "projects"


class Project:
    def __init__(self, root: Path, engine: Docker) -> None:
        self.root = root
        self.engine = engine
        self.name = root.name  # compose's project name: the folder's

    def stagecache(self, *args: str) -> str:
        """``stagecache -C ROOT ARGS``; its stdout (an error fails the test, with stderr shown by pytest)."""
        out = io.StringIO()
        code = main(["-C", str(self.root), *args], out=out, engine=self.engine)
        assert code == 0, f"stagecache {' '.join(args)} exited {code}"
        return out.getvalue()

    def fails(self, *args: str) -> None:
        code = main(["-C", str(self.root), *args], out=io.StringIO(), engine=self.engine)
        assert code != 0

    def manifest(self, target: str, *options: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.stagecache(*options, "key", "--json", target))
        return data

    def compose(self, *args: str) -> str:
        """The user's own ``docker compose ARGS``, run in the project."""
        done = subprocess.run(
            ["docker", "compose", *args], cwd=self.root, capture_output=True, text=True, check=True
        )
        return done.stdout

    def read(self, image: str, path: str) -> str:
        return self.engine.capture_in(image, "cat", [path]).stdout

    def files(self, image: str) -> str:
        """Every file the Dockerfile put into /app, with its digest."""
        command = ["-c", "cd /app && find . -type f | sort | xargs sha256sum"]
        return self.engine.capture_in(image, "sh", command).stdout

    def remove_images(self) -> None:
        done = subprocess.run(
            ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter",
             f"reference={self.name}-*"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        refs = [r for r in done.stdout.split() if not r.endswith(":<none>")]
        self.engine.remove_image(*refs, force=True)


@pytest.fixture
def copy(engine: Docker, tmp_path: Path, run_id: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``copy(NAME)``: the fixture project NAME in a folder of this test's own."""
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STAGECACHE_STORE", str(tmp_path / "store"))
    for name in ("COMPOSE_FILE", "COMPOSE_PROFILES", "COMPOSE_PROJECT_NAME", "COMPOSE_ENV_FILES"):
        monkeypatch.delenv(name, raising=False)
    made: list[Project] = []

    def make(name: str) -> Project:
        root = tmp_path / f"sc{run_id}"
        shutil.copytree(PROJECTS / name, root)
        made.append(Project(root, engine))
        return made[-1]

    yield make
    for project in made:
        project.remove_images()


def test_the_override_file_is_read_and_the_key_follows_it(copy: Any) -> None:
    project = copy("compose-override")
    found = discover(project.root, environ={})
    assert found is not None
    assert found.files == (project.root / "compose.yaml", project.root / "compose.override.yaml")
    with_override = project.manifest("dev")
    assert with_override["manifest"]["args"] == {"GREETING": "override"}

    # The files stagecache found are those compose reads: naming them gives the same configuration.
    found_files = [a for f in found.files for a in ("-f", str(f))]
    assert json.loads(project.compose(*found_files, "config", "--format", "json")) == json.loads(
        project.compose("config", "--format", "json")
    )

    project.stagecache("build", "-q", "--no-commit-tag", "dev")
    assert project.read(f"{project.name}-dev:latest", "/app/greeting") == "override\n"

    (project.root / "compose.override.yaml").unlink()  # the key follows: the arg is compose.yaml's now
    without = project.manifest("dev")
    assert without["manifest"]["args"] == {"GREETING": "base"}
    assert without["key"] != with_override["key"]
    why = project.stagecache("key", "--why", "dev")
    assert "build arg GREETING: 'override' -> 'base'" in why


def test_compose_file_variable(copy: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    project = copy("compose-file-env")
    alone = project.manifest("api")
    assert alone["manifest"]["args"] == {}
    project.fails("key", "tests")  # only compose.ci.yaml has it

    monkeypatch.setenv("COMPOSE_FILE", "compose.yaml:compose.ci.yaml")
    with_ci = project.manifest("api")
    assert with_ci["manifest"]["args"] == {"MODE": "ci"}
    assert with_ci["key"] != alone["key"]
    assert project.manifest("tests")["manifest"]["target"] == "dev"
    project.stagecache("build", "-q", "--no-commit-tag", "api", "tests")
    assert project.read(f"{project.name}-api:latest", "/app/mode") == "ci\n"

    monkeypatch.delenv("COMPOSE_FILE")  # the same from .env, as compose reads it
    (project.root / ".env").write_text("COMPOSE_FILE=compose.yaml:compose.ci.yaml\n")
    assert project.manifest("api")["key"] == with_ci["key"]


def test_a_service_behind_a_profile(
    copy: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = copy("compose-profiles")
    capsys.readouterr()
    project.fails("key", "debug")
    err = capsys.readouterr().err
    assert "service 'debug' is in profile 'debug', which is not active: pass --profile debug" in err

    by_option = project.manifest("debug", "--profile", "debug")
    assert by_option["manifest"]["target"] == "debug"
    monkeypatch.setenv("COMPOSE_PROFILES", "debug")
    assert project.manifest("debug")["key"] == by_option["key"]
    monkeypatch.delenv("COMPOSE_PROFILES")

    out = project.stagecache(
        "--profile", "debug", "-p", f"{project.name}-p", "build", "-q", "--no-commit-tag"
    )
    assert f"{project.name}-p-debug:latest" in out  # -p names the project, so the images
    assert f"{project.name}-p-api:latest" in out
    assert project.read(f"{project.name}-p-debug:latest", "/app/stage") == "debug\n"


def test_extra_hosts_reach_the_build_as_with_docker_compose_build(copy: Any) -> None:
    project = copy("compose-extra-hosts")
    image = f"{project.name}-app:latest"
    manifest = project.manifest("app")["manifest"]
    assert manifest["build_options"] == {
        "extra_hosts": ["index.stagecache.test=10.11.12.13", "proxy.stagecache.test=10.11.12.14"]
    }

    project.compose("build", "-q", "app")
    by_compose = project.files(image)
    hosts = project.read(image, "/app/hosts")
    assert hosts == "10.11.12.13\tindex.stagecache.test\n10.11.12.14\tproxy.stagecache.test\n"
    project.engine.remove_image(image)

    project.stagecache("build", "-q", "--no-commit-tag", "app")
    assert project.read(image, "/app/hosts") == hosts
    assert project.files(image) == by_compose
