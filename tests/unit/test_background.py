"""Saves beside the command (store/background.py): a miss returns before its save; the command's end
waits for it; an interrupt stops it without a record; a failed save is said and leaves no record."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, cast

import pytest

from stagecache.app import resolver_for
from stagecache.errors import CommandError
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target
from stagecache.store.background import BackgroundTier
from stagecache.store.directory import DirectoryStore
from tests.fakes import FakeEngine
from tests.unit.test_resolver import Recorder


class SlowSave(FakeEngine):
    """A fake engine whose ``docker save`` stream stops after its first bytes until ``go`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.go = threading.Event()
        self.fail = False

    @contextlib.contextmanager
    def save_stream(self, images: Sequence[str]) -> Iterator[IO[bytes]]:
        if self.fail:
            raise CommandError(["docker", "save"], 1, "Error response from daemon: no space left on device")
        with super().save_stream(images) as inner:
            yield cast(IO[bytes], _Held(inner, self))  # read() is all the store asks of it


class _Held:
    def __init__(self, inner: IO[bytes], engine: SlowSave) -> None:
        self.inner = inner
        self.engine = engine
        self.first = True

    def read(self, n: int = -1) -> bytes:
        if not self.first:
            self.engine.started.set()
            assert self.engine.go.wait(10), "the test never let the save go on"
        self.first = False
        return self.inner.read(min(n, 512) if n > 0 else 512)


def setup(tmp_path: Path, engine: SlowSave) -> tuple[Target, DirectoryStore, Recorder, BackgroundTier]:
    root = tmp_path / "project"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nCOPY app.py /app/\n")
    (root / "app.py").write_text("print('v1')\n")
    store = DirectoryStore(tmp_path / "store")
    reporter = Recorder()
    resolver = resolver_for(engine, store, reporter=reporter, background=True)
    tier = resolver.tiers[1]
    assert isinstance(tier, BackgroundTier)
    spec = TargetSpec(name="dev", context=root, dockerfile=root / "Dockerfile", stage="dev")
    target = Target(spec=spec, repository="proj")
    built = resolver.resolve(target)
    assert built.outcome == "built"
    return target, store, reporter, tier


def test_a_miss_returns_before_its_save_and_the_end_waits_for_it(tmp_path: Path) -> None:
    engine = SlowSave()
    _, store, reporter, tier = setup(tmp_path, engine)
    assert engine.started.wait(10)
    assert store.entries() == []  # the resolver returned; the save is still under way
    engine.go.set()
    tier.finish()
    entries = store.entries()
    assert [e.target for e in entries] == ["dev"]
    assert any(s.startswith("stored 1 image in the store:") and "B new of" in s for s in reporter.steps)
    assert store.verify() == []


def test_an_interrupt_stops_the_save_without_a_record(tmp_path: Path) -> None:
    engine = SlowSave()
    _, store, reporter, tier = setup(tmp_path, engine)
    assert engine.started.wait(10)
    tier._cancelled.set()  # what finish(cancel=True) sets first; then the save may go on and stop
    engine.go.set()
    tier.finish(cancel=True)
    assert store.entries() == []
    assert store.problems() == []
    assert not any(s.startswith("stored") for s in reporter.steps)
    assert list((store.base / "tmp").iterdir()) == []  # no temp file left behind
    # the next prune sweeps whatever blobs the stopped save had written
    store.prune(max_size=1 << 40)
    assert store.blobs.all() == []


def test_a_failed_save_is_said_and_stores_nothing(tmp_path: Path) -> None:
    engine = SlowSave()
    engine.fail = True
    _, store, reporter, tier = setup(tmp_path, engine)
    tier.finish()
    assert store.entries() == []
    assert any("not stored" in w and "no space left" in w for w in reporter.warnings)


@pytest.mark.parametrize("count", [2])
def test_images_handed_over_during_a_save_go_into_the_next_one_together(tmp_path: Path, count: int) -> None:
    engine = SlowSave()
    target, store, reporter, tier = setup(tmp_path, engine)
    assert engine.started.wait(10)
    # two more targets built while the first save is held: both wait, then go in one docker save
    resolver = resolver_for(engine, store, reporter=reporter)
    resolver.tiers[1] = tier
    for i in range(count):
        (target.spec.context / "app.py").write_text(f"print('v{i + 2}')\n")
        other = target._replace(spec=target.spec._replace(name=f"dev{i}"))
        assert resolver.resolve(other).outcome == "built"
    saves_before = engine.calls.count("save")
    engine.go.set()
    tier.finish()
    assert engine.calls.count("save") == saves_before + 1
    assert sorted(e.target for e in store.entries()) == ["dev", "dev0", "dev1"]
    assert store.verify() == []


def test_a_key_handed_over_counts_as_stored_and_a_busy_lock_holds_no_other(tmp_path: Path) -> None:
    """The build thread may hold a key the save needs while it asks for a key the save has: the save
    never holds one key while it waits for another, and a key on its way is not published again."""
    engine = SlowSave()
    _, store, _, tier = setup(tmp_path, engine)
    assert engine.started.wait(10)
    item = tier._current[0]
    assert store.get(item.key) is None
    assert tier.has(item.key)  # on its way: the resolver does not publish it again, nor lock it for that
    engine.go.set()
    tier.finish()
    # a save of two keys, one of which the "build thread" holds: it waits holding neither
    repository = item.ref.rsplit(":", 1)[0]
    # the busy key sorts after the free one: a save taking its locks in order would hold the free one
    busy = item._replace(key="sha256:" + "e" * 64, ref=f"{repository}:busy")
    free = item._replace(key="sha256:" + "d" * 64, ref=f"{repository}:free")
    engine.tag(item.image_id, busy.ref)
    engine.tag(item.image_id, free.ref)
    with store.lock(busy.key):
        tier.publish(busy)
        tier.publish(free)
        time.sleep(0.5)
        held = store.try_lock(free.key)
        assert held is not None  # the save is waiting, and not with this key in hand
        held.close()
        assert store.get(free.key) is None
    tier.finish()
    assert {busy.key, free.key} <= {e.key for e in store.entries()}
