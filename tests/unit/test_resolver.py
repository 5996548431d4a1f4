"""The resolver's loop over image tiers, driven through every branch by the fake engine (no daemon).

daemon hit -> retag; store hit -> load; miss -> lock, look again, build, publish; back-fill a tier that
lacks a hit's key; a damaged or forged store entry, a load the engine refuses, a lost race for the
lock, a context changed during the build, a failed build.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stagecache.app import resolver_for
from stagecache.build import Resolver
from stagecache.engine.base import Engine
from stagecache.errors import BuildError
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target
from stagecache.refs import key_ref
from stagecache.store.directory import DirectoryStore
from tests.fakes import FakeEngine


class Recorder:
    """A Reporter that keeps what it is told."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.warnings: list[str] = []

    def step(self, target: str, message: str) -> None:
        self.steps.append(message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def transfer(self, label: str, done: int, total: int | None) -> None:
        pass


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nCOPY app.py /app/\n")
    (root / "app.py").write_text("print('v1')\n")
    return root


@pytest.fixture
def engine() -> FakeEngine:
    return FakeEngine()


@pytest.fixture
def store(tmp_path: Path) -> DirectoryStore:
    return DirectoryStore(tmp_path / "store")


def target_in(project: Path) -> Target:
    return Target(
        TargetSpec("dev", project, project / "Dockerfile", "dev"), repository="app", image="app:dev"
    )


def resolver(engine: FakeEngine, store: DirectoryStore | None, reporter: Recorder | None = None) -> Resolver:
    return resolver_for(engine, store, reporter=reporter)


def test_the_fake_is_an_engine() -> None:
    fake: Engine = FakeEngine()  # mypy checks the fake against the Protocol
    assert fake.engine().platform == "linux/amd64"


def test_miss_builds_and_stores_then_a_hit_is_a_retag(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target, tags=["app:dev"])
    assert (first.outcome, first.stored) == ("built", True)
    assert engine.calls.count("build") == 1
    assert engine.calls.count("save") == 1
    assert store.get(first.key) is not None

    engine.calls.clear()
    again = resolver(engine, store).resolve(target, tags=["app:dev"])
    assert (again.outcome, again.image_id, again.stored) == ("daemon", first.image_id, False)
    assert "build" not in engine.calls
    assert "save" not in engine.calls
    assert "load" not in engine.calls
    assert "tag" not in engine.calls  # app:dev already names the image: nothing to do


def test_store_hit_loads_into_the_daemon(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target)
    engine.remove_image(first.image)  # a fresh CI runner: only the base image, and the cache dir

    engine.calls.clear()
    loaded = resolver(engine, store).resolve(target, tags=["app:dev"])
    assert (loaded.outcome, loaded.image_id) == ("store", first.image_id)
    assert engine.calls.count("load") == 1
    assert "build" not in engine.calls
    assert engine.image_inspect("app:dev") is not None


def test_a_daemon_hit_back_fills_a_store_that_lacks_the_key(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)
    built = resolver(engine, None).resolve(target)  # built without a store
    assert not built.stored

    engine.calls.clear()
    hit = resolver(engine, store).resolve(target)
    assert (hit.outcome, hit.stored) == ("daemon", True)
    assert store.get(hit.key) is not None
    assert "build" not in engine.calls
    assert engine.calls.count("save") == 1

    nothing_saved = resolver(engine, DirectoryStore(store.root.parent / "other")).resolve(target, save=False)
    assert (nothing_saved.outcome, nothing_saved.stored) == ("daemon", False)


def test_a_damaged_archive_is_removed_and_the_target_rebuilt(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target)
    engine.remove_image(first.image)
    entry = store.get(first.key)
    assert entry is not None
    layer = store.blobs.path(
        next(d for _, d, size, _ in entry.members if size > 0 and d.startswith("sha256:"))
    )
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))

    report = Recorder()
    again = resolver(engine, store, report).resolve(target)
    assert again.outcome == "built"
    assert any("rebuilding" in w for w in report.warnings), report.warnings
    assert again.stored  # stored anew, whole
    assert store.get(again.key) is not None


def test_an_archive_holding_another_image_is_not_a_hit(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target)
    engine.remove_image(first.image)
    entry = store.get(first.key)
    assert entry is not None
    forged = entry._replace(image_id="sha256:" + "0" * 64)  # the record vouches for another image
    from stagecache.store.files import atomic_write

    atomic_write(store.meta_path(first.key), __import__("json").dumps(forged._asdict()).encode())

    report = Recorder()
    again = resolver(engine, store, report).resolve(target)
    assert again.outcome == "built"  # not a daemon hit on what the rejected archive loaded
    assert any("did not hold" in w for w in report.warnings), report.warnings


def test_a_load_the_engine_refuses_falls_back_to_a_build(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target)
    engine.remove_image(first.image)
    engine.layers.clear()  # the base image's layers are gone from this daemon: the thin archive lacks them

    report = Recorder()
    again = resolver(engine, store, report).resolve(target)
    assert again.outcome == "built"
    assert any("docker load failed" in w for w in report.warnings), report.warnings


def test_waiting_for_the_lock_finds_what_the_other_builder_made(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """Lost race: another process holds the key's lock and builds; this one waits, then takes its image."""
    target = target_in(project)
    key, _ = resolver(engine, None).key(target)
    holding, waiting = threading.Event(), threading.Event()

    def other_builder() -> None:
        with store.lock(key):
            holding.set()
            assert waiting.wait(10)
            resolver(engine, None).resolve(target)  # the other process's build lands in the daemon

    class Waits(Recorder):
        def step(self, target: str, message: str) -> None:
            super().step(target, message)
            waiting.set()

    report = Waits()
    thread = threading.Thread(target=other_builder)
    thread.start()
    assert holding.wait(10)
    result = resolver(engine, store, report).resolve(target)
    thread.join(10)
    assert result.outcome == "daemon"
    assert engine.calls.count("build") == 1  # the other's build only
    assert any("waiting" in s for s in report.steps)


def test_a_context_changed_during_the_build_keeps_no_key_image(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    target = target_in(project)

    def edit() -> None:
        (project / "app.py").write_text("print('edited meanwhile')\n")

    engine.on_build = edit
    report = Recorder()
    result = resolver(engine, store, report).resolve(target, tags=["app:dev"])
    assert (result.outcome, result.stored) == ("built", False)
    assert engine.image_inspect(result.image) is None  # the key tag is gone: next run builds again
    assert engine.image_inspect("app:dev") is not None  # the tags asked for stay
    assert store.get(result.key) is None
    assert any("changed during the build" in w for w in report.warnings)


def test_a_failed_build_says_why(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    engine.build_error = "ERROR: failed to solve: process did not complete successfully\n"
    with pytest.raises(BuildError, match="failed to solve"):
        resolver(engine, store).resolve(target_in(project))
    assert store.entries() == []


def test_rebuild_builds_on_a_hit(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    target = target_in(project)
    resolver(engine, store).resolve(target)
    again = resolver(engine, store).resolve(target, rebuild=True)
    assert again.outcome == "built"
    assert engine.calls.count("build") == 2


def test_an_uncacheable_target_is_always_built_and_never_stored(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    (project / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nADD https://example.com/x.tgz /x\n")
    target = target_in(project)
    report = Recorder()
    for _ in range(2):
        result = resolver(engine, store, report).resolve(target)
        assert (result.outcome, result.cacheable, result.stored) == ("built", False, False)
    assert store.entries() == []
    assert any("not cacheable" in w for w in report.warnings)


def test_the_build_record_follows_the_key(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    target = target_in(project)
    first = resolver(engine, store).resolve(target)
    records = resolver(engine, store).records
    assert records is not None
    assert records.last_build_key("app__dev") == first.key
    (project / "app.py").write_text("print('v2')\n")
    second = resolver(engine, store).resolve(target)
    assert second.key != first.key
    assert records.last_build_key("app__dev") == second.key
    assert key_ref("app", second.key) == second.image


def test_from_scratch_asks_the_engine_nothing(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """``scratch`` is no image: neither its identity nor its ONBUILD triggers are looked up (or pulled)."""
    (project / "Dockerfile").write_text("FROM scratch AS dev\nCOPY app.py /app/\n")
    result = resolver(engine, store).resolve(target_in(project))
    assert result.outcome == "built"
    assert result.key.startswith("sha256:")


def test_an_entry_from_another_checkout_loads_under_this_ones_name(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """A CI runner's checkout folder names the default repository; another folder must still hit."""
    saved = resolver(engine, store).resolve(target_in(project))  # repository "app"
    engine.remove_image(saved.image)
    elsewhere = target_in(project)._replace(repository="other-folder-dev")

    loaded = resolver(engine, store).resolve(elsewhere)
    assert (loaded.outcome, loaded.image_id) == ("store", saved.image_id)
    assert engine.image_inspect(loaded.image) is not None  # other-folder-dev:sc-<key>
    assert engine.image_inspect(saved.image) is None  # the load applied no name of its own
    assert store.get(saved.key) is not None  # and the entry is still there


def test_archives_carry_no_image_names(engine: FakeEngine, store: DirectoryStore, project: Path) -> None:
    import io
    import json
    import tarfile

    saved = resolver(engine, store).resolve(target_in(project))
    entry = store.get(saved.key)
    assert entry is not None
    data = b"".join(store.load_stream(entry))
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        handle = tar.extractfile("manifest.json")
        assert handle is not None
        manifest = json.loads(handle.read())
        names = tar.getnames()
    assert manifest[0]["RepoTags"] is None
    assert "repositories" not in names


def test_buildkit_is_never_given_the_key_tag(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """The key tag comes after the post-build key check: a build orphaned by a killed stagecache, or one
    whose context changed, can never name an image with a key."""
    result = resolver(engine, store).resolve(target_in(project), tags=["app:dev"])
    assert engine.build_tags == [[]]
    assert engine.image_inspect(result.image) is not None  # tagged afterwards


Manifest = list[dict[str, Any]]


def _forge(store: DirectoryStore, key: str, edit: Callable[[Manifest], Any]) -> None:
    """Rewrite the manifest.json an entry's load plan holds (through ``edit``) in its record: what
    whoever can write the store can do."""
    import json

    from stagecache.store.files import atomic_write

    record = json.loads(store.meta_path(key).read_text())
    for member in record["members"]:
        if member[0] == "manifest.json":
            member[1] = "inline:" + json.dumps(edit(json.loads(member[1].removeprefix("inline:"))))
    atomic_write(store.meta_path(key), json.dumps(record).encode())


def test_a_load_never_moves_a_tag_the_archive_names(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    saved = resolver(engine, store).resolve(target_in(project))
    engine.remove_image(saved.image)
    base_before = engine.image_inspect(FakeEngine.BASE)
    assert base_before is not None

    def name_the_base(manifest: Manifest) -> Manifest:
        return [{**manifest[0], "RepoTags": [FakeEngine.BASE, "victim:latest"]}]

    _forge(store, saved.key, name_the_base)
    loaded = resolver(engine, store).resolve(target_in(project))
    assert loaded.outcome == "store"  # the image itself is the right one
    base_after = engine.image_inspect(FakeEngine.BASE)
    assert base_after is not None
    assert base_after.id == base_before.id  # python:3.11-slim was not moved onto the loaded image
    assert engine.image_inspect("victim:latest") is None


def test_an_archive_of_two_images_is_refused(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    saved = resolver(engine, store).resolve(target_in(project))
    engine.remove_image(saved.image)
    _forge(store, saved.key, lambda manifest: [*manifest, {**manifest[0], "RepoTags": ["other:1"]}])
    report = Recorder()
    again = resolver(engine, store, report).resolve(target_in(project))
    assert again.outcome == "built"
    assert any("not one image" in w and "lists 2 images" in w for w in report.warnings), report.warnings
    assert engine.image_inspect("other:1") is None


def test_from_scratch_the_image_store_kind_is_in_the_key(engine: FakeEngine, project: Path) -> None:
    """A classic store's archive is not what a containerd store loads: only an external base image's
    identity told the two apart, so a target built from scratch alone carries the store's kind."""
    (project / "Dockerfile").write_text("FROM scratch AS dev\nCOPY app.py /app/\n")
    classic, _ = resolver(engine, None).key(target_in(project))
    engine.store_kind = "containerd"
    containerd, found = resolver(engine, None).key(target_in(project))
    assert classic != containerd
    assert found.public["image_store"] == "containerd"
    (project / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nCOPY app.py /app/\n")
    _, based = resolver(engine, None).key(target_in(project))
    assert "image_store" not in based.public  # the base image's ID says it already: no /info asked


def test_a_record_naming_another_image_in_the_daemon_is_no_hit(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """The record names the base image's ID (in every daemon): the image the key tag would get is not
    the key's (no key label), so the entry goes and the target is built."""
    import json

    from stagecache.store.files import atomic_write

    saved = resolver(engine, store).resolve(target_in(project))
    engine.remove_image(saved.image)
    base = engine.image_inspect(FakeEngine.BASE)
    assert base is not None
    record = json.loads(store.meta_path(saved.key).read_text())
    atomic_write(store.meta_path(saved.key), json.dumps({**record, "image_id": base.id}).encode())
    report = Recorder()
    again = resolver(engine, store, report).resolve(target_in(project))
    assert again.outcome == "built"
    assert again.image_id != base.id
    assert any("did not hold" in w for w in report.warnings), report.warnings


@pytest.mark.parametrize(
    ("how", "said"),
    [
        ({"edit": lambda m: [*m, {**m[0], "RepoTags": ["python:3.11-slim"]}]}, "lists 2"),
        ({"edit": lambda m: ["x"]}, "does not describe an image"),
        ({"edit": lambda m: {"not": "a list"}}, "lists no images"),
    ],
)
def test_a_forged_archive_is_a_clean_miss(
    engine: FakeEngine, store: DirectoryStore, project: Path, how: dict[str, Any], said: str
) -> None:
    saved = resolver(engine, store).resolve(target_in(project))
    engine.remove_image(saved.image)
    base = engine.image_inspect(FakeEngine.BASE)
    _forge(store, saved.key, **how)
    report = Recorder()
    again = resolver(engine, store, report).resolve(target_in(project))
    assert again.outcome == "built"
    assert any(said in w for w in report.warnings), report.warnings
    assert store.get(saved.key) is None or again.stored  # the forged entry went (and a new one came)
    after = engine.image_inspect(FakeEngine.BASE)
    assert after is not None
    assert base is not None
    assert after.id == base.id


def test_a_base_tag_moved_during_the_build_keeps_no_key_image(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """A `docker pull` of the base in another CI step while BuildKit builds: the image may be built on
    the new base, so it is not filed under the key computed from the old one (found in review)."""
    import copy
    import hashlib

    old_base = engine.tags[FakeEngine.BASE]

    def pull_a_new_base() -> None:
        data = copy.deepcopy(engine.images[old_base])
        data["RootFS"]["Layers"] = [*data["RootFS"]["Layers"], "sha256:" + "9" * 64]
        data["Id"] = "sha256:" + hashlib.sha256(b"a new base").hexdigest()
        engine._add(data, [FakeEngine.BASE])

    engine.on_build = pull_a_new_base
    report = Recorder()
    result = resolver(engine, store, report).resolve(target_in(project))
    assert (result.outcome, result.stored) == ("built", False)
    assert engine.image_inspect(result.image) is None
    assert store.get(result.key) is None
    assert any("a base image changed during the build" in w for w in report.warnings)


def test_the_store_limit_holds_after_any_save(
    engine: FakeEngine, store: DirectoryStore, project: Path
) -> None:
    """store-max-size is kept by the store tier itself, whichever command saved (`test`, `check-prod`):
    it used to be enforced by `stagecache build` alone (found in review)."""
    first = resolver_for(engine, store, store_max_size=1).resolve(target_in(project))
    assert first.stored
    (project / "app.py").write_text("print('v2')\n")
    report = Recorder()
    second = resolver_for(engine, store, reporter=report, store_max_size=1).resolve(target_in(project))
    assert second.stored
    # the older entry goes; the one just saved is still under its key's lock, so it stays
    assert [e.key for e in store.entries()] == [second.key]
    assert any("store over 1 bytes: removed" in w for w in report.warnings)
