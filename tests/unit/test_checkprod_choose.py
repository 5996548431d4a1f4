"""Which image check-prod inspects (project/choose.py ``prod_choice``), and that a stage no target
builds is built for the check only: not stored, no tag but its key tag (checkprod with the fake engine).

The layouts are those of public FastAPI projects: one service ``api`` built with ``target: dev`` from a
Dockerfile whose ``prod`` stage no service builds; one service built with no target (its last stage,
``dev``) from a Dockerfile whose first stage is ``prod``; ``target: ${TARGET:-development}`` beside a
``release`` stage; a ``project/`` folder with ``Dockerfile`` and ``Dockerfile.prod`` whose last stage is
unnamed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from stagecache.app import resolver_for
from stagecache.checkprod import check_prod
from stagecache.cli.commands.check import as_json
from stagecache.errors import ConfigError
from stagecache.key.spec import TargetSpec
from stagecache.process import Completed
from stagecache.project import choose
from stagecache.project.settings import Settings, Target
from stagecache.refs import is_key_ref, split_tag
from stagecache.store.directory import DirectoryStore
from tests.fakes import FakeEngine

STAGED = "FROM python:3.11-slim AS base\nFROM base AS prod\nCOPY app.py /app/\nFROM prod AS dev\nRUN echo\n"


def settings(
    root: Path,
    services: Mapping[str, tuple[str, str | None]],
    tool: dict[str, Any] | None = None,
    files: Mapping[str, str] | None = None,
) -> Settings:
    """Compose-like targets ``name -> (Dockerfile path, target stage)`` over these files."""
    for name, text in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    targets = {}
    for name, (dockerfile, stage) in services.items():
        path = root / dockerfile
        spec = TargetSpec(name, path.parent, path, stage)
        targets[name] = Target(spec, repository=f"proj-{name}", image=f"proj-{name}:latest", service=name)
    out = Settings(root, targets, [], tool)
    out.compose_data = {"name": "proj"}
    return out


def test_a_prod_stage_that_no_service_builds(tmp_path: Path) -> None:
    s = settings(tmp_path, {"api": ("Dockerfile", "dev")}, files={"Dockerfile": STAGED})
    choice = choose.prod_choice(s, None)
    assert not choice.configured
    assert choice.reason == ("stage 'prod' of Dockerfile: a prod stage name that no target builds; "
                             "built for this check only, not stored")  # fmt: skip
    spec = choice.target.spec
    assert (spec.name, spec.stage) == ("Dockerfile:prod", "prod")
    assert (spec.dockerfile, spec.context) == (tmp_path / "Dockerfile", tmp_path)
    assert choice.target.repository == "proj-prod"
    assert choice.target.image is None  # nothing to tag


def test_a_service_without_target_builds_the_last_stage(tmp_path: Path) -> None:
    dockerfile = "FROM python:3.11-slim AS prod\nRUN pip install poetry\nFROM prod AS dev\nRUN echo\n"
    s = settings(tmp_path, {"api": ("Dockerfile", None)}, files={"Dockerfile": dockerfile})
    choice = choose.prod_choice(s, None, repository="mine", build_args={"A": "1"})
    assert (choice.target.name, choice.target.repository, dict(choice.target.spec.build_args)) == (
        "Dockerfile:prod", "mine", {"A": "1"})  # fmt: skip
    assert choose.dev_target(s) == s.targets["api"]  # the only target runs the tests


def test_release_beside_a_development_target(tmp_path: Path) -> None:
    dockerfile = ("FROM python:3.11-slim AS base\nFROM base AS development\nRUN echo\n"
                  "FROM base AS release\nRUN echo\nFROM base AS lint\nRUN echo\n")  # fmt: skip
    services = {"web": ("Dockerfile", "development"), "db-init": ("db/Dockerfile", None)}
    files = {"Dockerfile": dockerfile, "db/Dockerfile": "FROM python:3.11-slim\n"}
    s = settings(tmp_path, services, {"build-args": {"PY": "3.11"}}, files)
    choice = choose.prod_choice(s, None)
    assert (choice.target.name, dict(choice.target.spec.build_args)) == ("Dockerfile:release", {"PY": "3.11"})
    assert choose.test_service(s, None).name == "web"  # "development" is a dev stage name


def test_a_second_dockerfile_with_an_unnamed_last_stage(tmp_path: Path) -> None:
    prod = "FROM python:3.11-slim AS builder\nRUN pip wheel -r requirements.txt\nFROM python:3.11-slim\n"
    files = {"project/Dockerfile": "FROM python:3.11-slim\nRUN echo\n", "project/Dockerfile.prod": prod,
             "docker-compose.prod.yml": "services: {}\n"}  # fmt: skip
    s = settings(tmp_path, {"web": ("project/Dockerfile", None)}, files=files)
    choice = choose.prod_choice(s, None)
    assert choice.reason.startswith("the unnamed last stage of project/Dockerfile.prod, a second Dockerfile")
    spec = choice.target.spec
    assert (spec.name, spec.stage, spec.context) == ("project/Dockerfile.prod", None, tmp_path / "project")


def test_no_test_service_but_one_dockerfile_with_a_prod_image(tmp_path: Path) -> None:
    """A web service and its database, each built from a folder of its own: neither is a test service,
    only the web one has a Dockerfile.prod beside it."""
    plain = "FROM python:3.11-slim\n"
    files = {"project/Dockerfile": plain, "project/Dockerfile.prod": plain, "project/db/Dockerfile": plain}
    s = settings(tmp_path, {"web": ("project/Dockerfile", None), "web-db": ("project/db/Dockerfile", None)},
                 files=files)  # fmt: skip
    assert choose.dev_target(s) is None
    assert choose.prod_choice(s, None).target.name == "project/Dockerfile.prod"
    (tmp_path / "project/db/Dockerfile.prod").write_text("FROM python:3.11-slim\n")
    expected = "the targets' Dockerfiles have several: project/Dockerfile.prod, project/db/Dockerfile.prod"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        choose.prod_choice(s, None)


def test_services_that_build_the_prod_stage(tmp_path: Path) -> None:
    services = {
        "api": ("Dockerfile", "prod"),
        "worker": ("Dockerfile", "prod"),
        "tests": ("Dockerfile", "dev"),
    }
    s = settings(tmp_path, services, files={"Dockerfile": STAGED})
    choice = choose.prod_choice(s, None)
    assert (choice.target.name, choice.configured) == ("api", True)
    assert choice.reason == "service api: it builds stage 'prod' (worker builds the same image)"
    other = s.targets["worker"]
    s.targets["worker"] = other._replace(spec=other.spec._replace(build_args={"DEBUG": "1"}))
    with pytest.raises(ConfigError, match=r"api, worker build stage 'prod' differently"):
        choose.prod_choice(s, None)


def test_named_and_configured(tmp_path: Path) -> None:
    files = {"Dockerfile": STAGED, "Dockerfile.alt": "FROM python:3.11-slim AS one\nFROM one AS two\n"}
    s = settings(tmp_path, {"api": ("Dockerfile", "dev")}, {"prod-target": "base"}, files)
    configured = choose.prod_choice(s, None).reason
    assert configured.startswith("stage 'base' of Dockerfile ([tool.stagecache] prod-target)")
    assert choose.prod_choice(s, "api").reason == "target api (named on the command line)"
    named = choose.prod_choice(s, "Dockerfile.alt:one")
    assert (named.target.name, named.target.spec.stage) == ("Dockerfile.alt:one", "one")
    assert choose.prod_choice(s, "Dockerfile.alt").target.spec.stage == "two"
    with pytest.raises(ConfigError, match=r"Dockerfile\.alt has no stage 'three'; stages: one, two"):
        choose.prod_choice(s, "Dockerfile.alt:three")
    with pytest.raises(ConfigError, match="named on the command line: 'nope' is no target"):
        choose.prod_choice(s, "nope")


def test_the_last_stage_when_tests_build_another(tmp_path: Path) -> None:
    dockerfile = "FROM python:3.11-slim AS base\nFROM base AS dev\nRUN echo\nFROM base AS app\nRUN echo\n"
    s = settings(tmp_path, {"api-tests": ("Dockerfile", "dev")}, files={"Dockerfile": dockerfile})
    assert choose.prod_choice(s, None).reason.startswith(
        "stage 'app' of Dockerfile: the last stage, which the test service api-tests does not build"
    )
    # the -f route: every stage is a target, so the last one is configured
    s.targets["app"] = Target(TargetSpec("app", tmp_path, tmp_path / "Dockerfile", "app"), "proj-app")
    choice = choose.prod_choice(s, None)
    assert (choice.target.name, choice.configured) == ("app", True)


def test_no_prod_image_to_be_found(tmp_path: Path) -> None:
    s = settings(
        tmp_path, {"api": ("Dockerfile", "dev")}, files={"Dockerfile": "FROM python:3.11-slim AS dev\n"}
    )
    expected = r"prod: .*runtime, final; none in Dockerfile \(the test service's\) or a second Dockerfile"
    with pytest.raises(ConfigError, match=expected):
        choose.prod_choice(s, None)


# --- the use case with the fake engine: nothing stored, no extra tag ------------------------------------
class Engine(FakeEngine):
    def __init__(self, installed: Sequence[list[object]]) -> None:
        super().__init__()
        self.installed = list(installed)
        self.probed: list[str] = []

    def capture_in(self, image: str, entrypoint: str, command: Sequence[str]) -> Completed:
        self.probed.append(image)
        rows = [] if image == self.BASE else self.installed
        return Completed(
            ["docker", "run"], 0, json.dumps({"python_version": "3.11"}) + "\n" + json.dumps(rows), ""
        )


def test_a_stage_built_for_the_check_is_not_stored_nor_tagged(tmp_path: Path) -> None:
    files = {"Dockerfile": STAGED, "app.py": "print(1)\n", "requirements.txt": "fastapi\n",
             "requirements-dev.txt": "pytest\n"}  # fmt: skip
    s = settings(tmp_path, {"api": ("Dockerfile", "dev")}, files=files)
    engine = Engine([["fastapi", "0.115", "/usr/local/lib/python3.11/site-packages/fastapi-0.115.dist-info"]])
    store = DirectoryStore(tmp_path / "store")
    before = set(engine.tags)
    result = check_prod(resolver_for(engine, store), engine, s, None)
    assert result.report.clean
    assert (result.target, result.choice.configured, result.stored) == ("Dockerfile:prod", False, False)
    assert store.entries() == []  # neither the prod stage nor the test service's image went to the store
    new_tags = set(engine.tags) - before
    assert new_tags
    assert all(is_key_ref(t) for t in new_tags)  # key tags only: no :latest, no image:
    assert {split_tag(t)[0] for t in new_tags} == {"proj-prod", "proj-api"}
    assert list(result.images) == ["Dockerfile:prod", "api"]
    assert result.report.dev_packages.names == {"pytest"}
    assert engine.probed == [result.images["Dockerfile:prod"]]  # the base image is asked only when needed

    site = "/usr/local/lib/python3.11/site-packages"
    engine.installed.append(["pytest", "8.3.5", f"{site}/pytest-8.3.5.dist-info", ["iniconfig"], "pip", True])
    result = check_prod(resolver_for(engine, store), engine, s, None)
    assert [(f.package.name, f.verdict, f.why) for f in result.report.found] == [
        ("pytest", "leak", "installed by pip on request")]  # fmt: skip
    assert engine.probed[-1] == "python:3.11-slim"  # the base image, to tell what it ships
    assert store.entries() == []
    data = as_json(result)
    assert data["chosen"] == {"target": "Dockerfile:prod", "dockerfile": str(tmp_path / "Dockerfile"),
                              "stage": "prod", "reason": result.choice.reason, "configured": False,
                              "stored": False}  # fmt: skip
    assert (data["clean"], data["not_counted"], data["base_image"]) == (False, [], "python:3.11-slim")
    location = f"{site}/pytest-8.3.5.dist-info"
    assert data["found"] == [{"name": "pytest", "version": "8.3.5", "location": location, "verdict": "leak",
                              "why": "installed by pip on request", "lock_version": None, "installer": "pip",
                              "requested": True}]  # fmt: skip
    assert data["dev_packages"] == {"source": result.report.dev_packages.source,
                                    "files": ["requirements-dev.txt"], "names": ["pytest"]}  # fmt: skip
