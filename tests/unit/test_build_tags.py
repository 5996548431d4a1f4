"""Which tags a build applies: the commit-SHA rule, and no tag on two targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.build import check_tags_unique, commit_tag
from stagecache.errors import ConfigError
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target

SHA = "0123456789abcdef0123456789abcdef01234567"


def target(name: str, stage: str | None, repository: str = "app", image: str | None = None) -> Target:
    return Target(TargetSpec(name, Path("/ctx"), Path("/ctx/Dockerfile"), stage), repository, image)


def test_prod_and_dev_in_one_repository_never_share_the_sha_tag() -> None:
    prod, dev = target("api-server", "prod"), target("api-tests", "dev")
    assert commit_tag(prod, [prod, dev], SHA) == f"app:{SHA}"
    assert commit_tag(dev, [prod, dev], SHA) == f"app:{SHA}-dev"


def test_the_only_target_of_its_repository_gets_the_bare_sha() -> None:
    dev = target("api-tests", "dev", repository="app-tests")
    prod = target("api-server", "prod", repository="app")
    assert commit_tag(dev, [prod, dev], SHA) == f"app-tests:{SHA}"


def test_without_a_prod_stage_every_target_is_suffixed() -> None:
    a, b = target("web", "base"), target("worker", None)
    assert commit_tag(a, [a, b], SHA) == f"app:{SHA}-base"
    assert commit_tag(b, [a, b], SHA) == f"app:{SHA}-worker"


@pytest.mark.parametrize("stage", ["production", "Release", "runtime", "final"])
def test_conventional_prod_stage_names_ship(stage: str) -> None:
    prod, dev = target("p", stage), target("d", "development")
    assert commit_tag(prod, [prod, dev], SHA) == f"app:{SHA}"
    assert commit_tag(dev, [prod, dev], SHA) == f"app:{SHA}-development"


def test_two_prod_like_targets_are_both_suffixed() -> None:
    a, b = target("a", "prod"), target("b", "release")
    assert {commit_tag(a, [a, b], SHA), commit_tag(b, [a, b], SHA)} == {
        f"app:{SHA}-prod",
        f"app:{SHA}-release",
    }


def test_a_tag_for_two_targets_is_refused() -> None:
    a, b = target("a", "prod", image="app:latest"), target("b", "dev", image="app")  # one tag: app:latest
    with pytest.raises(ConfigError, match="both name the image"):
        check_tags_unique([a, b], [])
    with pytest.raises(ConfigError, match="--tag names one image"):
        check_tags_unique([target("a", "prod"), target("b", "dev")], ["x:1"])
    check_tags_unique([target("a", "prod", image="app:prod"), target("b", "dev", image="app:dev")], [])
    check_tags_unique([target("a", "prod")], ["x:1"])


def test_two_dockerfiles_without_compose_are_told_apart(tmp_path: Path) -> None:
    """`-f Dockerfile` and `-f Dockerfile.prod`, both with an unnamed last stage: two repositories, so
    `key --why` never compares one with the other."""
    from stagecache.project.load import load
    from stagecache.project.settings import Options
    from stagecache.refs import target_id
    from tests.fakes import FakeEngine

    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY . /app\n")
    (tmp_path / "Dockerfile.prod").write_text("FROM python:3.11-slim\nCOPY app /app\n")
    ids = set()
    for name in ("Dockerfile", "Dockerfile.prod"):
        settings = load(Options(project_dir=tmp_path, dockerfile=str(tmp_path / name)), FakeEngine())
        (only,) = settings.targets.values()
        ids.add(target_id(only.repository, only.name))
    assert len(ids) == 2


def test_two_targets_of_one_stage_are_told_apart_by_name() -> None:
    """`api` and `worker` both build stage dev into one repository (found in review)."""
    api, worker = target("api", "dev"), target("worker", "dev")
    tags = {commit_tag(api, [api, worker], SHA), commit_tag(worker, [api, worker], SHA)}
    assert tags == {f"app:{SHA}-api", f"app:{SHA}-worker"}
