"""Which target a command works on when none is named (project/choose.py, used by the commands)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from stagecache.errors import ConfigError
from stagecache.key.spec import TargetSpec
from stagecache.project import choose
from stagecache.project.settings import Settings, Target


def settings(stages: Mapping[str, str | None], tool: dict[str, Any] | None = None, **kw: Any) -> Settings:
    targets = {
        name: Target(TargetSpec(name, Path("/ctx"), Path("/ctx/Dockerfile"), stage), repository=f"r-{name}")
        for name, stage in stages.items()
    }
    out = Settings(Path("/ctx"), targets, kw.get("defaults", []), tool)
    out.compose_files = kw.get("compose_files", [])
    return out


COMPOSE: dict[str, str | None] = {"api": "prod", "api-tests": "Dev", "worker": "worker"}


def test_the_one_target_built_for_the_stage() -> None:
    s = settings(COMPOSE, compose_files=[Path("/ctx/compose.yaml")])
    assert choose.prod_target(s, None).name == "api"
    assert choose.test_service(s, None).name == "api-tests"  # stage names compare without case
    assert choose.run_service(s, None).name == "api"
    assert choose.dev_target(s) == s.targets["api-tests"]


def test_named_then_configured_then_by_stage() -> None:
    s = settings(COMPOSE, tool={"test-service": "worker"})
    assert choose.test_service(s, "api").name == "api"
    assert choose.test_service(s, None).name == "worker"
    with pytest.raises(ConfigError, match="unknown target 'nope'"):
        choose.prod_target(s, "nope")


def test_two_candidates_are_not_guessed() -> None:
    s = settings({"a": "prod", "b": "prod"})
    with pytest.raises(
        ConfigError, match=r"name the prod target \(or set \[tool.stagecache\] prod-target\); targets: a, b"
    ):
        choose.prod_target(s, None)
    assert choose.dev_target(s) is None


def test_run_needs_a_compose_file() -> None:
    with pytest.raises(ConfigError, match="stagecache run needs a compose file"):
        choose.run_service(settings(COMPOSE), "api")


def test_single_target() -> None:
    assert choose.single_target(settings(COMPOSE), "worker").name == "worker"
    assert choose.single_target(settings(COMPOSE, defaults=["api"]), None).name == "api"
    assert choose.single_target(settings({"only": None}), None).name == "only"
    with pytest.raises(ConfigError, match="name a target; targets: api, api-tests, worker"):
        choose.single_target(settings(COMPOSE), None)
    with pytest.raises(ConfigError, match="no targets in /ctx"):
        choose.single_target(settings({}), None)
