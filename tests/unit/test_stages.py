"""Stage-level restore through the resolver and the fake engine: which stages a miss takes from a tier,
which it builds and keeps, and which it never replaces (no daemon)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.app import resolver_for
from stagecache.build import Resolver
from stagecache.engine.docker import Docker
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target
from stagecache.refs import KEY_LABEL, TARGET_LABEL, key_ref
from stagecache.stages import stage_spec, unsupported_reason
from stagecache.store.directory import DirectoryStore
from tests.fakes import FakeEngine
from tests.unit.test_resolver import Recorder

DOCKERFILE = """\
FROM python:3.11-slim AS base
WORKDIR /app
FROM base AS deps
COPY requirements.txt ./
RUN pip install -r requirements.txt
FROM deps AS dev
COPY app.py ./
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "requirements.txt").write_text("fastapi\n")
    (root / "app.py").write_text("print('v1')\n")
    return root


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.use_version("version-26.1.json")  # an engine whose BuildKit has named contexts
    return fake


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "store")


def dev(project: Path, stage: str = "dev") -> Target:
    return Target(TargetSpec("dev", project, project / "Dockerfile", stage), repository="app")


def resolver(engine: FakeEngine, store: DirectoryStore | None, report: Recorder | None = None) -> Resolver:
    return resolver_for(engine, store, reporter=report)


def stage_key(engine: FakeEngine, project: Path, stage: str) -> str:
    target = dev(project)
    return resolver(engine, None).key(target._replace(spec=stage_spec(target.spec, stage)))[0]


def test_a_first_miss_builds_everything_and_keeps_each_named_stage(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    result = resolver(engine, store).resolve(dev(project))
    assert (result.outcome, result.restored) == ("built", ())
    assert engine.builds == [("dev", {}), ("deps", {}), ("base", {})]  # the target, then its stages
    for stage in ("deps", "base"):
        key = stage_key(engine, project, stage)
        info = engine.image_inspect(key_ref("app", key))
        assert info is not None
        assert info.labels[KEY_LABEL] == key
        assert info.labels[TARGET_LABEL] == f"dev/{stage}"
        assert store.get(key) is not None
    assert store.get(result.key) is not None
    assert result.key not in {stage_key(engine, project, s) for s in ("deps", "base")}


def test_an_edit_after_the_stage_restores_it_from_the_daemon(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver(engine, store).resolve(dev(project))
    (project / "app.py").write_text("print('v2')\n")
    engine.builds.clear()
    report = Recorder()
    result = resolver(engine, store, report).resolve(dev(project))
    assert result.restored == (("deps", "daemon"),)
    assert result.as_json()["restored"] == [{"stage": "deps", "from": "daemon"}]
    deps = key_ref("app", stage_key(engine, project, "deps"))
    assert engine.builds == [("dev", {"deps": deps})]  # base is below deps: neither asked nor built
    assert "restored deps from the daemon; building the rest" in report.steps


def test_a_stage_restored_from_the_daemon_back_fills_a_store_that_lacks_it(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver(engine, None).resolve(dev(project))  # built without a store: the stages are in the daemon
    (project / "app.py").write_text("print('v2')\n")
    assert resolver(engine, store).resolve(dev(project)).restored == (("deps", "daemon"),)
    assert store.get(stage_key(engine, project, "deps")) is not None
    (project / "app.py").write_text("print('v3')\n")
    assert resolver(engine, store).resolve(dev(project), save=False).restored == (("deps", "daemon"),)


def test_a_stage_only_the_store_has_is_loaded_and_restored(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver(engine, store).resolve(dev(project))
    deps = key_ref("app", stage_key(engine, project, "deps"))
    engine.remove_image(deps)  # a fresh CI runner: the store has it, the daemon not
    (project / "app.py").write_text("print('v2')\n")
    engine.builds.clear()
    engine.calls.clear()
    result = resolver(engine, store).resolve(dev(project))
    assert result.restored == (("deps", "store"),)
    assert engine.calls.count("load") == 1
    assert engine.image_inspect(deps) is not None
    assert engine.builds == [("dev", {"deps": deps})]


def test_a_stage_whose_input_changed_is_not_restored_but_its_base_is(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver(engine, store).resolve(dev(project))
    old_deps = stage_key(engine, project, "deps")
    (project / "requirements.txt").write_text("fastapi\nuvicorn\n")
    new_deps = stage_key(engine, project, "deps")
    assert new_deps != old_deps
    engine.builds.clear()
    result = resolver(engine, store).resolve(dev(project))
    assert result.restored == (("base", "daemon"),)
    base = key_ref("app", stage_key(engine, project, "base"))
    # the target, then the one stage no tier had, both with base standing in
    assert engine.builds == [("dev", {"base": base}), ("deps", {"base": base})]
    assert store.get(new_deps) is not None


def test_a_stage_named_by_index_or_unnamed_is_never_replaced(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    (project / "Dockerfile").write_text(
        "FROM python:3.11-slim AS tools\nRUN echo tools > /t\n"
        "FROM python:3.11-slim\nRUN echo anon > /a\n"
        "FROM python:3.11-slim AS dev\nCOPY --from=0 /t /t\nCOPY --from=1 /a /a\nCOPY app.py ./\n"
    )
    resolver(engine, store).resolve(dev(project))
    assert engine.builds == [("dev", {})]  # nothing to keep: neither stage can stand in
    (project / "app.py").write_text("print('v2')\n")
    engine.builds.clear()
    assert resolver(engine, store).resolve(dev(project)).restored == ()
    assert engine.builds == [("dev", {})]


def test_a_named_stage_below_an_unnamed_one_is_restored(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    (project / "Dockerfile").write_text(
        "FROM python:3.11-slim AS deps\nRUN echo deps > /d\n"
        "FROM deps\nRUN echo anon > /a\n"
        "FROM python:3.11-slim AS dev\nCOPY --from=1 /a /a\nCOPY app.py ./\n"
    )
    resolver(engine, store).resolve(dev(project))
    (project / "app.py").write_text("print('v2')\n")
    engine.builds.clear()
    result = resolver(engine, store).resolve(dev(project))
    assert result.restored == (("deps", "daemon"),)  # the walk goes through the unnamed stage


def test_a_copy_from_stage_is_restored_too(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    (project / "Dockerfile").write_text(
        "FROM python:3.11-slim AS build\nCOPY requirements.txt /r\nRUN echo wheel > /w\n"
        "FROM python:3.11-slim AS dev\nRUN --mount=type=bind,from=build,source=/w,target=/w cat /w\n"
        "COPY --from=build /w /w\nCOPY app.py ./\n"
    )
    resolver(engine, store).resolve(dev(project))
    (project / "app.py").write_text("print('v2')\n")
    assert resolver(engine, store).resolve(dev(project)).restored == (("build", "daemon"),)


def test_stages_with_onbuild_or_uncacheable_inputs_are_neither_kept_nor_restored(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    (project / "Dockerfile").write_text(
        "FROM python:3.11-slim AS trig\nONBUILD RUN echo hi\n"
        "FROM python:3.11-slim AS fetched\nADD https://example.com/x.tgz /x\n"
        "FROM trig AS dev\nCOPY --from=fetched /x /x\nCOPY app.py ./\n"
    )
    first = resolver(engine, store).resolve(dev(project))
    assert not first.cacheable
    assert engine.builds == [("dev", {})]
    engine.builds.clear()
    assert resolver(engine, store).resolve(dev(project)).restored == ()
    assert engine.builds == [("dev", {})]


def test_an_engine_without_named_contexts_builds_as_before_and_says_why_once(
    store: DirectoryStore, project: Path
) -> None:
    engine = FakeEngine()  # Docker 20.10: BuildKit 0.8
    reason = unsupported_reason(engine.engine())
    assert reason is not None
    assert "20.10" in reason
    report = Recorder()
    res = resolver(engine, store, report)
    res.resolve(dev(project))
    (project / "app.py").write_text("print('v2')\n")
    result = res.resolve(dev(project))
    assert result.restored == ()
    assert engine.builds == [("dev", {}), ("dev", {})]  # no stage images either
    said = [s for s in report.steps if s.startswith("no stage restored")]
    assert said == [f"no stage restored: {reason}"]


def test_a_hit_asks_nothing_about_stages(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    resolver(engine, store).resolve(dev(project))
    engine.calls.clear()
    hit = resolver(engine, store).resolve(dev(project))
    assert (hit.outcome, hit.restored) == ("daemon", ())
    assert engine.calls.count("inspect") <= 2  # the base image and the key tag, as before


def test_rebuild_restores_nothing(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    resolver(engine, store).resolve(dev(project))
    engine.builds.clear()
    result = resolver(engine, store).resolve(dev(project), rebuild=True)
    assert result.restored == ()
    assert engine.builds == [("dev", {})]


def test_stage_images_are_kept_in_the_daemon_without_a_store(engine: FakeEngine, project: Path) -> None:
    resolver(engine, None).resolve(dev(project))
    (project / "app.py").write_text("print('v2')\n")
    assert resolver(engine, None).resolve(dev(project)).restored == (("deps", "daemon"),)


def test_a_context_changed_during_the_build_keeps_no_stage_image(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    def edit() -> None:
        (project / "requirements.txt").write_text("changed meanwhile\n")

    engine.on_build = edit
    resolver(engine, store).resolve(dev(project))
    assert [t for t in engine.tags if ":sc-" in t] == []
    assert store.entries() == []


def test_a_restored_stage_is_a_named_build_context_in_the_argv(tmp_path: Path) -> None:
    from tests.unit.test_docker_argv import Recorder as Runner

    runner = Runner()
    Docker(runner=runner).build(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="dev", tags=[], build_args={},
        labels={}, iidfile=tmp_path / "iid", build_contexts={"deps": "app:sc-0123"},
    )  # fmt: skip
    argv = runner.calls[0]
    assert argv[argv.index("--build-context") + 1] == "deps=docker-image://app:sc-0123"
