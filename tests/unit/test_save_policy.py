"""When builds are written into the store: in CI by default, everywhere with ``--save`` or ``save =
"always"``, never with ``save = "never"``; the store is read everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.app import App
from stagecache.errors import ConfigError
from stagecache.project.load import save_policy
from stagecache.project.settings import Settings, in_ci
from tests.fakes import FakeEngine


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, False),
        ({"CI": "true"}, True),  # GitHub Actions, GitLab CI, CircleCI
        ({"CI": "1"}, True),
        ({"CI": "false"}, False),
        ({"CI": ""}, False),
        ({"JENKINS_URL": "http://ci:8080/"}, True),  # Jenkins sets no CI
        ({"TF_BUILD": "True"}, True),  # Azure Pipelines
    ],
)
def test_a_ci_job_is_recognised(env: dict[str, str], expected: bool) -> None:
    assert in_ci(env) is expected


def test_the_flag_wins_then_the_environment_then_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STAGECACHE_SAVE", raising=False)
    assert save_policy({}, tmp_path, forced=False) == "ci"
    assert save_policy({"save": "never"}, tmp_path, forced=False) == "never"
    assert save_policy({"save": "never"}, tmp_path, forced=True) == "always"
    monkeypatch.setenv("STAGECACHE_SAVE", "always")
    assert save_policy({"save": "never"}, tmp_path, forced=False) == "always"


def test_a_bad_policy_names_where_it_was_said(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGECACHE_SAVE", raising=False)
    with pytest.raises(ConfigError, match=r"pyproject.toml: \[tool.stagecache\] save = 'sometimes'"):
        save_policy({"save": "sometimes"}, tmp_path, forced=False)
    monkeypatch.setenv("STAGECACHE_SAVE", "yes")
    with pytest.raises(ConfigError, match="STAGECACHE_SAVE = 'yes'"):
        save_policy({}, tmp_path, forced=False)


@pytest.mark.parametrize(
    ("policy", "ci", "writes"),
    [("ci", True, True), ("ci", False, False), ("always", False, True), ("never", True, False)],
)
def test_the_store_tier_is_read_only_where_builds_are_not_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str, ci: bool, writes: bool
) -> None:
    for name in ("CI", "GITHUB_ACTIONS", "GITLAB_CI", "CIRCLECI", "JENKINS_URL", "TF_BUILD"):
        monkeypatch.delenv(name, raising=False)
    if ci:
        monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    settings = Settings(tmp_path, {}, [])
    settings.store = tmp_path / "store"
    settings.save = policy
    app = App(settings, FakeEngine())
    store_tier = app.resolver().tiers[1]
    assert store_tier.name == "store"
    assert store_tier.writable is writes
    app.close()
