from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stagecache.errors import ConfigError, StoreError
from stagecache.project.values import parse_size
from stagecache.store.directory import CorruptEntry, DirectoryStore
from stagecache.store.files import atomic_write
from stagecache.store.records import Records

KEY_A = "sha256:" + "a" * 64
KEY_B = "sha256:" + "b" * 64
KEY_C = "sha256:" + "c" * 64


def writer(payload: bytes) -> Callable[[Callable[[bytes], None]], int]:
    def write_into(sink: Callable[[bytes], None]) -> int:
        for i in range(0, len(payload), 1000):
            sink(payload[i : i + 1000])
        return len(payload)

    return write_into


def put(store: DirectoryStore, key: str, payload: bytes) -> None:
    store.put(
        key,
        writer(payload),
        target="t",
        repository="r",
        image_id="sha256:" + "1" * 64,
        manifest_sha256="2" * 64,
    )


def read(store: DirectoryStore, key: str) -> bytes:
    entry = store.get(key)
    assert entry is not None
    with store.open_archive(entry) as chunks:
        return b"".join(chunks)


def test_round_trip_compresses(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    payload = b"layer data " * 50_000
    put(store, KEY_A, payload)
    assert read(store, KEY_A) == payload
    entry = store.get(KEY_A)
    assert entry is not None
    assert entry.image_bytes == len(payload)
    assert entry.archive_bytes < len(payload) / 10
    assert store.verify() == []


def test_damaged_archive_is_detected_and_removed(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, os.urandom(200_000))
    archive = store.archive_path(KEY_A)
    data = bytearray(archive.read_bytes())
    data[100] ^= 1
    archive.write_bytes(bytes(data))
    with pytest.raises(CorruptEntry):
        read(store, KEY_A)
    assert store.get(KEY_A) is None
    assert not archive.exists()


def test_truncated_archive_is_detected(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, os.urandom(200_000))
    archive = store.archive_path(KEY_A)
    archive.write_bytes(archive.read_bytes()[:5000])
    with pytest.raises(CorruptEntry):
        read(store, KEY_A)


def test_failed_write_leaves_store_unchanged(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"kept")

    def failing(sink: Callable[[bytes], None]) -> int:
        sink(b"partial data")
        raise OSError(28, "No space left on device")

    with pytest.raises(StoreError, match="the disk is full; the store is unchanged"):
        store.put(KEY_B, failing, target="t", repository="r", image_id="i", manifest_sha256="2" * 64)
    assert [e.key for e in store.entries()] == [KEY_A]
    assert list((tmp_path / "v1/tmp").iterdir()) == []
    assert not store.archive_path(KEY_B).exists()


def test_leftovers_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.ensure()
    dead = tmp_path / f"v1/tmp/{'b' * 64}~{socket.gethostname()}~999999999~abcd~zst.partial"
    dead.write_bytes(b"half")
    alive = tmp_path / f"v1/tmp/{'c' * 64}~{socket.gethostname()}~{os.getpid()}~abcd~zst.partial"
    alive.write_bytes(b"in progress")
    orphan = store.archive_path(KEY_C)
    orphan.write_bytes(b"archive without a record")
    removed = DirectoryStore(tmp_path).clean_leftovers()
    assert dead in removed
    assert orphan in removed
    assert alive.exists()


def test_prune_least_recently_used_first(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    for key in (KEY_A, KEY_B, KEY_C):
        put(store, key, os.urandom(10_000))
        time.sleep(0.01)
    entry_a = store.get(KEY_A)
    assert entry_a is not None
    store.touch(entry_a)  # A is now the most recently used
    size = store.get(KEY_B).archive_bytes  # type: ignore[union-attr]
    removed = store.prune(max_size=2 * size + 100)
    assert [e.key for e in removed] == [KEY_B]
    assert {e.key for e in store.entries()} == {KEY_A, KEY_C}
    assert [e.key for e in store.prune(keep=1)] == [KEY_C]
    assert [e.key for e in store.entries()] == [KEY_A]


def test_prune_older_than(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"a")
    put(store, KEY_B, b"b")
    old = store.get(KEY_A)
    assert old is not None
    old = old._replace(last_used=time.time() - 3 * 86400)
    atomic_write(store.meta_path(KEY_A), json.dumps(old._asdict()).encode())
    os.utime(store.meta_path(KEY_A), (old.last_used, old.last_used))  # a use is the record's mtime
    assert [e.key for e in store.prune(older_than=86400, dry_run=True)] == [KEY_A]
    assert len(store.entries()) == 2  # a dry run removes nothing
    store.prune(older_than=86400)
    assert [e.key for e in store.entries()] == [KEY_B]


def test_unwritable_store_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="is not writable"):
        DirectoryStore(blocker / "store").ensure()


def test_records_last_build(tmp_path: Path) -> None:
    store = Records(tmp_path / "v1")
    store.record_build("repo__t", KEY_A, {"files": []})
    last = store.last_build("repo__t")
    assert last is not None
    assert last["key"] == KEY_A
    assert store.last_build_key("repo__t") == KEY_A  # a hit compares this, not the whole manifest
    store.record_build("repo__t", KEY_B, {"files": [["a", "file", "0o644", "x"]]})
    assert store.last_build_key("repo__t") == KEY_B
    assert store.last_build("other") is None
    assert store.last_build_key("other") is None


# --- what whoever can write the store may have left there (issue 12) ---------------------------------------
def test_a_stray_file_is_skipped_reported_and_repaired(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    (store.base / "objects" / "notakey.tar.zst").write_bytes(b"x")
    (store.base / "meta" / "README").write_text("hello")
    fresh = DirectoryStore(tmp_path)
    fresh.ensure()  # not fatal: every command that opens the store gets here
    assert [e.key for e in fresh.entries()] == [KEY_A]
    assert sorted(p.name for p, _ in fresh.problems()) == ["README", "notakey.tar.zst"]
    assert sorted(p.name for p, _ in fresh.repair()) == ["README", "notakey.tar.zst"]
    assert fresh.problems() == []
    assert [e.key for e in fresh.entries()] == [KEY_A]


@pytest.mark.parametrize(
    "change",
    [
        {"archive_bytes": "12"},
        {"archive_bytes": -1},
        {"created": True},
        {"image_id": "not-a-digest"},
        {"key": KEY_B},  # a record moved to another key's name
        {"target": None},
    ],
)
def test_a_record_that_does_not_check_is_skipped_and_cleaned(
    tmp_path: Path, change: dict[str, object]
) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    meta = store.meta_path(KEY_A)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), **change}))
    assert store.get(KEY_A) is None
    assert store.entries() == []
    ((path, reason),) = store.problems()
    assert path == meta
    assert "record" in reason
    store.prune(keep=5)  # the next prune cleans it, with its archive
    assert not meta.exists()
    assert not store.archive_path(KEY_A).exists()


def test_a_record_with_a_field_from_a_later_version_still_reads(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    meta = store.meta_path(KEY_A)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "blobs": ["sha256:x"]}))
    entry = store.get(KEY_A)
    assert entry is not None
    assert entry.key == KEY_A


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        ({"keep": -1}, "at least 1"),
        ({"keep": 0}, "at least 1"),
        ({"max_size": -5}, "positive"),
        ({"max_size": True}, "positive"),
        ({"older_than": -3.0}, "positive"),
    ],
)
def test_prune_limits_must_be_positive(tmp_path: Path, limits: dict[str, Any], message: str) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    with pytest.raises(ConfigError, match=message):
        store.prune(**limits)
    assert store.get(KEY_A) is not None


@pytest.mark.parametrize("value", [-5, 0, True, "0MB", "-1GB"])
def test_sizes_must_be_positive(value: object) -> None:
    with pytest.raises(ConfigError):
        parse_size(value, "pyproject.toml")


def test_the_probe_never_writes_through_a_planted_link(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    tmp = tmp_path / "store" / "v1" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f".probe-{os.getpid()}").symlink_to(victim)  # where the old probe wrote
    DirectoryStore(tmp_path / "store").ensure()
    assert victim.read_text() == "precious"


def test_repair_leaves_another_writers_temp_files_alone(tmp_path: Path) -> None:
    """A parallel CI job's atomic write in progress is a hidden temp file in meta/: not a stray."""
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    in_flight = store.base / "meta" / f".{KEY_B.removeprefix('sha256:')}.json.abc123.tmp"
    in_flight.write_text("{half a rec")
    assert store.problems() == []
    store.prune(keep=5)
    assert in_flight.exists()
    old = time.time() - 2 * 24 * 3600  # a day-old one is a leftover of a killed writer
    os.utime(in_flight, (old, old))
    assert [p.name for p, _ in store.problems()] == [in_flight.name]


def test_repair_skips_a_record_whose_writer_holds_its_lock(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, b"payload")
    store.meta_path(KEY_A).write_text("{}")
    with store.lock(KEY_A):
        store.repair()
        assert store.meta_path(KEY_A).exists()
    store.repair()
    assert not store.meta_path(KEY_A).exists()
