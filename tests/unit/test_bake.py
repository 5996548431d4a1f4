"""Several misses in one BuildKit solve (`docker buildx bake`), through the resolver and the fake engine."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.app import resolver_for
from stagecache.bake import Request, bakeable, definition, image_ids
from stagecache.build import build_targets
from stagecache.key.spec import BuildOptions, BuildSecret, TargetSpec
from stagecache.project.settings import Target
from stagecache.refs import KEY_LABEL, TARGET_LABEL, key_ref
from stagecache.store.directory import DirectoryStore
from tests.fakes import FakeEngine
from tests.unit.test_resolver import Recorder

DOCKERFILE = """\
FROM python:3.11-slim AS deps
COPY requirements.txt ./
FROM deps AS prod
COPY app.py ./
FROM deps AS dev
COPY app.py tests.py ./
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    for name, text in {"Dockerfile": DOCKERFILE, "requirements.txt": "fastapi\n", "app.py": "v1\n",
                       "tests.py": "t\n"}.items():  # fmt: skip
        (root / name).write_text(text)
    return root


@pytest.fixture
def engine() -> FakeEngine:
    fake = FakeEngine()
    fake.use_version("version-26.1.json")
    return fake


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "store")


def target(project: Path, stage: str, **args: str) -> Target:
    spec = TargetSpec(stage, project, project / "Dockerfile", stage, build_args=args)
    return Target(spec, repository="app", image=f"app:{stage}")


def test_two_missing_targets_and_their_stage_images_are_one_bake(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver = resolver_for(engine, store)
    results = build_targets(resolver, [target(project, "prod"), target(project, "dev")])
    assert engine.bakes == [["r0", "r1", "r2", "r3"]]  # prod, dev, prod/deps, dev/deps
    assert engine.calls.count("bake") == 1  # the fake makes each of its images as a build
    assert [(r.target, r.outcome) for r in results] == [("prod", "built"), ("dev", "built")]
    for result in results:
        assert result.key == resolver.key(target(project, result.target))[0]
        info = engine.image_inspect(result.image)
        assert info is not None
        assert (info.labels[KEY_LABEL], info.labels[TARGET_LABEL]) == (result.key, result.target)
        assert info.id == result.image_id
        tagged = engine.image_inspect(f"app:{result.target}")
        assert tagged is not None
        assert tagged.id == result.image_id
        assert store.get(result.key) is not None
    stage_labels = {i["Config"]["Labels"][TARGET_LABEL] for i in engine.images.values()
                    if TARGET_LABEL in i["Config"]["Labels"]}  # fmt: skip
    assert {"prod/deps", "dev/deps"} <= stage_labels

    (project / "app.py").write_text("v2\n")  # both miss again; deps comes from the daemon for each
    engine.bakes.clear()
    again = build_targets(resolver_for(engine, store), [target(project, "prod"), target(project, "dev")])
    assert engine.bakes == [["r0", "r1"]]
    assert [r.restored for r in again] == [(("deps", "daemon"),), (("deps", "daemon"),)]


def test_one_missing_target_without_stage_images_is_a_plain_build(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    resolver_for(engine, store).resolve(target(project, "dev"))  # a bake: dev and dev/deps
    (project / "app.py").write_text("v2\n")
    engine.calls.clear()
    resolver_for(engine, store).resolve(target(project, "dev"))
    assert "bake" not in engine.calls
    assert engine.calls.count("build") == 1


def test_a_hit_and_a_miss_bake_only_the_miss(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    first = resolver_for(engine, store).resolve(target(project, "prod"))
    engine.bakes.clear()
    results = build_targets(resolver_for(engine, store), [target(project, "prod"), target(project, "dev")])
    assert (results[0].outcome, results[0].image_id) == ("daemon", first.image_id)
    assert results[1].outcome == "built"
    assert engine.bakes == [["r0", "r1"]]  # dev and dev/deps


def test_a_secret_looking_build_arg_builds_one_at_a_time(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    targets = [target(project, "prod", API_TOKEN="s3cret"), target(project, "dev")]
    build_targets(resolver_for(engine, store), targets)
    assert engine.bakes == []
    assert engine.calls.count("build") == 4


def test_a_failed_bake_falls_back_to_one_build_at_a_time(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    engine.bake_error = "ERROR: bake failed\n"
    report = Recorder()
    results = build_targets(resolver_for(engine, store, reporter=report),
                            [target(project, "prod"), target(project, "dev")])  # fmt: skip
    assert [r.outcome for r in results] == ["built", "built"]
    assert engine.calls.count("build") == 4
    assert any("bake failed" in w for w in report.warnings)


def test_an_engine_without_named_contexts_still_bakes_its_targets(
    store: DirectoryStore, project: Path
) -> None:
    engine = FakeEngine()  # 20.10: no stage images, but bake works (buildx 0.13 on BuildKit 0.8)
    build_targets(resolver_for(engine, store), [target(project, "prod"), target(project, "dev")])
    assert engine.bakes == [["r0", "r1"]]


def test_the_definition_says_what_build_would(tmp_path: Path) -> None:
    secret = BuildSecret("npm", "file", "/run/npmrc")
    request = Request("dev", tmp_path, tmp_path / "Dockerfile", "dev", {"A": "1"}, {"l": "v"}, "linux/arm64",
                      (secret,), {"deps": "app:sc-01"})  # fmt: skip
    made = definition([request, request._replace(name="dev/deps", stage="deps", contexts={})])
    assert made["group"]["default"]["targets"] == ["r0", "r1"]
    assert made["target"]["r0"] == {
        "context": str(tmp_path), "dockerfile": str(tmp_path / "Dockerfile"), "args": {"A": "1"},
        "labels": {"l": "v"}, "tags": [], "output": ["type=docker"], "target": "dev",
        "platforms": ["linux/arm64"], "secret": ["id=npm,src=/run/npmrc"],
        "contexts": {"deps": "docker-image://app:sc-01"},
    }  # fmt: skip
    assert "contexts" not in made["target"]["r1"]
    assert bakeable([request, request], ["*TOKEN*"])
    assert not bakeable([request], ["*TOKEN*"])  # one request: a plain build
    assert not bakeable([request, request._replace(options=BuildOptions(network="host"))], [])


def test_image_ids_as_buildx_takes_them() -> None:
    metadata = {
        "r0": {"containerimage.config.digest": "sha256:c", "containerimage.digest": "sha256:m"},  # classic
        "r1": {"containerimage.digest": "sha256:m1"},  # containerd's store, BuildKit 0.8
    }
    assert image_ids(metadata, 3) == ["sha256:c", "sha256:m1", None]


def test_key_tags_of_stage_images_follow_their_keys(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    from stagecache.stages import stage_spec

    resolver = resolver_for(engine, store)
    resolver.resolve(target(project, "dev"))
    dev = target(project, "dev")
    key = resolver.key(dev._replace(spec=stage_spec(dev.spec, "deps")))[0]
    info = engine.image_inspect(key_ref("app", key))
    assert info is not None
    assert info.labels[KEY_LABEL] == key
