"""The resolved compose configuration, cached: a hit asks compose nothing, and each thing compose reads
(files, env files, the variables they name, compose itself, the options) makes a miss when it changes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stagecache.project import compose_cache
from stagecache.project.compose_files import discover
from tests.fakes import FakeEngine

COMPOSE = """\
services:
  api:
    build:
      context: .
      args:
        LEVEL: ${LEVEL:-1}
    env_file: [api.env]
    environment:
      - PASSED_ON
    extends:
      file: common.yaml
      service: base
"""


class Counting(FakeEngine):
    """The fake engine, answering `compose config` with the project's file contents, counting calls."""

    def compose_config(self, directory: Path, files: Any = (), **kwargs: Any) -> dict[str, Any]:
        super().compose_config(directory, files, **kwargs)
        return {"name": directory.name, "services": {}, "asked": len(self.compose_configs)}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "shop"
    root.mkdir()
    (root / "compose.yaml").write_text(COMPOSE)
    (root / "common.yaml").write_text("services:\n  base:\n    image: python:3.11-slim\n")
    (root / "api.env").write_text("API_MODE=${API_MODE_DEFAULT}\n")
    (root / ".env").write_text("LEVEL=2\n")
    return root


@pytest.fixture
def environ(tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    (home / ".docker" / "cli-plugins").mkdir(parents=True)
    (home / ".docker" / "cli-plugins" / "docker-compose").write_text("v2.26.1")
    return {"HOME": str(home), "PATH": "/nonexistent", "DOCKER_CONFIG": str(home / ".docker")}


class Resolve:
    """`compose_cache.resolved` for the project as it is now; ``asked`` counts compose processes."""

    def __init__(self, root: Path, cache: Path, environ: dict[str, str]) -> None:
        self.root, self.cache, self.environ = root, cache, environ
        self.engine = Counting()
        self.kwargs: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        found = discover(self.root, environ=self.environ, **self.kwargs)
        assert found is not None
        return compose_cache.resolved(self.engine, found, self.root, cache=self.cache, environ=self.environ)

    @property
    def asked(self) -> int:
        return len(self.engine.compose_configs)


@pytest.fixture
def resolve(project: Path, tmp_path: Path, environ: dict[str, str]) -> Resolve:
    return Resolve(project, tmp_path / "cache", environ)


def test_a_hit_asks_compose_nothing(resolve: Resolve) -> None:
    first = resolve()
    assert resolve.asked == 1
    assert resolve() == first
    assert resolve.asked == 1
    (entry,) = resolve.cache.iterdir()
    stored = json.loads(entry.read_text())
    assert stored["version"] == compose_cache.VERSION
    assert stored["config"] == first


def edit(path: Path, text: str) -> Callable[[Resolve], None]:
    def change(resolve: Resolve) -> None:
        (resolve.root / path).write_text(text)

    return change


def setenv(name: str, value: str) -> Callable[[Resolve], None]:
    def change(resolve: Resolve) -> None:
        resolve.environ[name] = value

    return change


def option(name: str, value: Any) -> Callable[[Resolve], None]:
    def change(resolve: Resolve) -> None:
        resolve.kwargs[name] = value

    return change


def plugin_replaced(resolve: Resolve) -> None:
    plugin = Path(resolve.environ["DOCKER_CONFIG"]) / "cli-plugins" / "docker-compose"
    plugin.write_text("v2.27.0, a longer version")


def moved(resolve: Resolve) -> None:
    target = resolve.root.parent / "shop-copy"
    resolve.root.rename(target)
    resolve.root = target


CHANGES = {
    "the compose file": edit(Path("compose.yaml"), COMPOSE + "  db:\n    image: postgres:15\n"),
    "an override appears": edit(Path("compose.override.yaml"), "services: {}\n"),
    "the dotenv file": edit(Path(".env"), "LEVEL=3\n"),
    "an env_file": edit(Path("api.env"), "API_MODE=prod\n"),
    "an extended file": edit(Path("common.yaml"), "services:\n  base:\n    image: python:3.12-slim\n"),
    "an interpolated variable": setenv("LEVEL", "9"),
    "a bare environment entry's variable": setenv("PASSED_ON", "x"),
    "a variable an env_file names": setenv("API_MODE_DEFAULT", "dev"),
    "a COMPOSE_ variable": setenv("COMPOSE_PROFILES", "debug"),
    "a DOCKER_ variable": setenv("DOCKER_DEFAULT_PLATFORM", "linux/arm64"),
    "the compose plugin": plugin_replaced,
    "the project directory": moved,
    "--profile": option("profiles", ["debug"]),
    "-p": option("project_name", "other"),
    "--env-file": option("env_files", [".env"]),
    "--compose-file": option("given", ["compose.yaml"]),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_each_input_makes_a_miss(resolve: Resolve, change: str) -> None:
    resolve()
    resolve()
    assert resolve.asked == 1
    CHANGES[change](resolve)
    resolve()
    assert resolve.asked == 2, f"{change} did not make a miss"
    resolve()
    assert resolve.asked == 2, f"after {change}, the new answer was not kept"


def test_an_unrelated_variable_or_file_does_not(resolve: Resolve) -> None:
    resolve()
    resolve.environ["UNRELATED_TO_COMPOSE"] = "1"
    (resolve.root / "notes.txt").write_text("x")
    resolve()
    assert resolve.asked == 1


def test_a_remote_include_is_never_cached(resolve: Resolve) -> None:
    (resolve.root / "compose.override.yaml").write_text("include:\n  - oci://registry.example/app:1\n")
    resolve()
    resolve()
    assert resolve.asked == 2


def test_an_entry_of_another_version_or_damaged_is_a_miss(resolve: Resolve) -> None:
    resolve()
    (entry,) = resolve.cache.iterdir()
    stored = json.loads(entry.read_text())
    entry.write_text(json.dumps({**stored, "version": compose_cache.VERSION + 1}))
    resolve()
    assert resolve.asked == 2
    entry.write_text("{not json")
    resolve()
    assert resolve.asked == 3
    resolve()
    assert resolve.asked == 3


def test_the_cache_can_be_turned_off(resolve: Resolve) -> None:
    resolve.environ["STAGECACHE_COMPOSE_CACHE"] = "0"
    resolve()
    resolve()
    assert resolve.asked == 2
    assert not resolve.cache.exists()


def test_one_entry_per_project_and_options(resolve: Resolve) -> None:
    for level in range(3):
        resolve.environ["LEVEL"] = str(level)
        resolve()
    assert len(os.listdir(resolve.cache)) == 1
    resolve.kwargs["profiles"] = ["debug"]
    resolve()
    assert len(os.listdir(resolve.cache)) == 2


def test_compose_is_asked_as_the_user_would_ask_it(resolve: Resolve) -> None:
    resolve()
    assert resolve.engine.compose_configs == [(resolve.root, (), ())]  # no -f: compose finds its files
    resolve.kwargs.update(given=["compose.yaml"], profiles=["debug"])
    resolve()
    assert resolve.engine.compose_configs[-1] == (resolve.root, (resolve.root / "compose.yaml",), ("debug",))


def test_a_warm_hit_of_a_compose_project_starts_no_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As tests/unit/test_startup.py, with a compose file: the second run finds the configuration in
    the cache, so nothing imports `subprocess` (which `docker compose config` would need)."""
    monkeypatch.delenv("STAGECACHE_COMPOSE_CACHE", raising=False)
    from tests.unit.test_startup import ENGINE, NOT_ON_A_WARM_HIT, _forbidden, _imported

    asking = "    def tag(self, source, target):"
    assert asking in ENGINE
    script = ENGINE.replace(
        asking,
        f"""\
    def compose_config(self, directory, files=(), **kwargs):
        import pathlib
        pathlib.Path("asked").write_text("yes")
        build = {{"context": str(directory), "dockerfile": "Dockerfile", "target": "dev"}}
        return {{"name": "shop", "services": {{"dev": {{"build": build}}}}}}
{asking}""",
    )
    (tmp_path / "compose.yaml").write_text("services:\n  dev:\n    build: {context: ., target: dev}\n")
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print('hi')\n")
    args = ["build", "--store", str(tmp_path / "store"), "dev"]
    _imported(args, tmp_path, script)
    assert (tmp_path / "asked").exists()
    (tmp_path / "asked").unlink()
    modules, out = _imported(args, tmp_path, script)
    assert "daemon" in out
    assert not (tmp_path / "asked").exists()
    assert _forbidden(modules, NOT_ON_A_WARM_HIT) == []


@pytest.fixture
def nested(project: Path) -> Path:
    """`compose.yaml` includes `infra/api.yaml`, whose own paths are relative to `infra/`: it includes
    `build.yaml`, extends `base.yaml` and reads `api.env`, all three in `infra/` (none in the project)."""
    (project / "compose.yaml").write_text("include:\n  - infra/api.yaml\n")
    infra = project / "infra"
    infra.mkdir()
    (infra / "api.yaml").write_text(
        "include:\n  - build.yaml\n"
        "services:\n  api:\n    env_file: [api.env]\n"
        "    extends:\n      file: base.yaml\n      service: base\n"
    )
    (infra / "build.yaml").write_text("services:\n  worker:\n    build: {context: ., args: {MODE: a}}\n")
    (infra / "base.yaml").write_text("services:\n  base:\n    image: python:3.11-slim\n")
    (infra / "api.env").write_text("API_MODE=a\n")
    return project


NESTED = {
    "a file an included file includes": ("build.yaml", "services: {worker: {build: {args: {MODE: b}}}}\n"),
    "a file an included file extends": ("base.yaml", "services:\n  base:\n    image: python:3.12-slim\n"),
    "an env_file of an included file": ("api.env", "API_MODE=b\n"),
    "the .env next to an included file": (".env", "MODE=b\n"),
}


@pytest.mark.parametrize("change", list(NESTED), ids=list(NESTED))
def test_paths_are_resolved_from_the_file_that_names_them(
    nested: Path, tmp_path: Path, environ: dict[str, str], change: str
) -> None:
    resolve = Resolve(nested, tmp_path / "cache", environ)
    resolve()
    resolve()
    assert resolve.asked == 1
    name, text = NESTED[change]
    (nested / "infra" / name).write_text(text)
    resolve()
    assert resolve.asked == 2, f"{change} did not make a miss"
    resolve()
    assert resolve.asked == 2
