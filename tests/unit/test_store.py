"""The directory store (store/directory.py, blobs.py): blobs shared between entries, pruning by blob,
atomic saves, verify, records that do not check, the OCI index. Entries come from fake ``docker save``
tars (tests/storekit.py)."""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import pytest

from stagecache.errors import ConfigError, StoreError
from stagecache.project.values import parse_size
from stagecache.store.directory import DirectoryStore
from stagecache.store.files import atomic_write
from stagecache.store.records import Records
from tests.storekit import image, key, layer, loaded, member_bytes, noise, put, save_tar, sha, wanted

KEY_A, KEY_B, KEY_C = key("a"), key("b"), key("c")
BASE = image([layer("base")], "base")
DEPS = layer("deps", 400_000)  # the dependency stage's layer, shared by prod and dev


def _layer_blob(store: DirectoryStore, data: bytes) -> str:
    known = store.blobs.known(sha(data))
    assert known is not None
    return known.digest


def _on_disk(store: DirectoryStore) -> int:
    return sum(store.blobs.size(d) for d in store.blobs.all())


def test_round_trip_compresses_a_layer_and_finds_it_by_its_uncompressed_digest(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    img = image([layer("big", 1_000_000)])
    entry = put(store, KEY_A, img)
    with loaded(store, KEY_A) as tar:
        name = json.loads(member_bytes(tar, "manifest.json"))[0]["Layers"][0]
        assert member_bytes(tar, name) == img.layers[0]
    known = store.blobs.known(img.diff_ids[0])
    assert known is not None
    assert known.compressed
    assert known.size < 100_000  # zstd of a text that repeats
    link = store.base / "diffs" / img.diff_ids[0].removeprefix("sha256:")
    assert os.path.basename(os.readlink(link)) == known.digest.removeprefix("sha256:")
    assert not store.blobs.has(img.diff_ids[0])  # kept compressed only
    assert known.digest in entry.blobs()
    assert entry.stored_bytes == sum(store.blobs.size(d) for d in entry.blobs())
    assert store.verify() == []


@pytest.mark.parametrize("layout", ["classic", "oci"])
def test_a_second_image_adds_only_its_own_layers(tmp_path: Path, layout: str) -> None:
    """prod and dev share the base and the deps layer: dev's save adds its layer, config, manifest."""
    store = DirectoryStore(tmp_path)
    prod = image([*BASE.layers, DEPS, layer("prod")], "prod")
    dev = image([*BASE.layers, DEPS, layer("dev")], "dev")
    first = put(store, KEY_A, prod, base=BASE, ref="app:prod", layout=layout)
    store.sweep()  # 20.10 layouts: the base layer, read before it was known to be one
    blobs_before = set(store.blobs.all())
    second = put(store, KEY_B, dev, base=BASE, ref="app:dev", layout=layout)
    store.sweep()
    added = set(store.blobs.all()) - blobs_before
    assert added == second.blobs() - first.blobs()
    assert _layer_blob(store, DEPS) in added | blobs_before
    assert _layer_blob(store, DEPS) not in added
    assert _layer_blob(store, dev.layers[2]) in added
    assert dev.image_id in added
    assert second.manifest_digest in added
    # dev's layer, its config, the store's manifest of it (and on an OCI layout the engine's)
    assert len(added) == (3 if layout == "classic" else 4)
    assert second.new_bytes == sum(store.blobs.size(d) for d in added)
    assert second.new_bytes < second.stored_bytes
    assert store.total_bytes() == _on_disk(store)  # each blob once
    assert store.total_bytes() < first.stored_bytes + second.stored_bytes
    with loaded(store, KEY_B) as tar:  # dev loads whole, shared layer included
        layers = json.loads(member_bytes(tar, "manifest.json"))[0]["Layers"]
        assert member_bytes(tar, layers[1]) == DEPS


def test_the_same_image_saved_again_adds_nothing(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    img = image([layer("one"), noise(100_000)])
    put(store, KEY_A, img)
    before = set(store.blobs.all())
    again = put(store, KEY_B, img)  # another key, the same image (a rebuild on another branch)
    assert set(store.blobs.all()) - before == {again.manifest_digest}  # its manifest names its key
    assert again.new_bytes == store.blobs.size(again.manifest_digest)


@pytest.mark.parametrize("layout", ["oci", "containerd"])
def test_a_layer_stored_from_one_layout_serves_another(tmp_path: Path, layout: str) -> None:
    """A layer saved by a 20.10 engine (uncompressed, kept as zstd) is found again by its diff ID
    when an OCI-layout save names it so; a gzip blob is kept as it is."""
    store = DirectoryStore(tmp_path)
    img = image([layer("shared", 300_000)])
    put(store, KEY_A, img, layout="classic")
    entry = put(store, KEY_B, img, layout=layout)
    if layout == "oci":
        assert _layer_blob(store, img.layers[0]) in entry.blobs()
        assert entry.new_bytes < 10_000  # the layer was not written again, only config and manifest
    with loaded(store, KEY_B) as tar:
        assert tar.getnames()


def _three(store: DirectoryStore) -> dict[str, Any]:
    """A, B, C sharing a big layer, each with a small one of its own; used A, then C, then B (newest)."""
    shared = noise(300_000)
    images = {
        k: image([shared, noise(20_000 + i * 1000)], k[-1]) for i, k in enumerate((KEY_A, KEY_B, KEY_C))
    }
    for k, img in images.items():
        put(store, k, img)
    for age, k in ((30, KEY_A), (20, KEY_C), (10, KEY_B)):  # a use is the record's mtime, after its save
        os.utime(store.meta_path(k), (time.time() + 100 - age, time.time() + 100 - age))
    return images


def test_prune_counts_a_shared_blob_once(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    images = _three(store)
    b, c = store.get(KEY_B), store.get(KEY_C)
    assert b is not None
    assert c is not None
    both = store.total_bytes([b, c])
    assert both < b.stored_bytes + c.stored_bytes  # the shared layer counted once
    removed = store.prune(max_size=both)  # B and C fit, counted by blob; A, least recently used, goes
    assert [e.key for e in removed] == [KEY_A]
    assert {e.key for e in store.entries()} == {KEY_B, KEY_C}
    assert store.blobs.known(images[KEY_A].diff_ids[1]) is None  # A's own layer went with the sweep
    assert not store.blobs.has(images[KEY_A].image_id)  # and its config
    assert store.blobs.known(images[KEY_A].diff_ids[0]) is not None  # the shared layer stays
    assert set(store.blobs.all()) == b.blobs() | c.blobs()  # nothing else is left
    for k in (KEY_B, KEY_C):
        with loaded(store, k) as tar:
            assert tar.getnames()


def test_prune_keep_and_older_than_and_dry_run(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    _three(store)
    blobs = set(store.blobs.all())
    assert [e.key for e in store.prune(keep=1, dry_run=True)] == [KEY_C, KEY_A]
    assert set(store.blobs.all()) == blobs  # a dry run removes nothing
    assert len(store.entries()) == 3
    assert [e.key for e in store.prune(older_than=1000)] == []
    old = time.time() - 3 * 86400
    record = json.loads(store.meta_path(KEY_A).read_text())
    atomic_write(store.meta_path(KEY_A), json.dumps({**record, "last_used": old, "created": old}).encode())
    os.utime(store.meta_path(KEY_A), (old, old))  # a use is the record's mtime
    assert [e.key for e in store.prune(older_than=86400)] == [KEY_A]
    assert [e.key for e in store.prune(keep=1)] == [KEY_C]
    assert [e.key for e in store.entries()] == [KEY_B]
    entry = store.entries()[0]
    assert set(store.blobs.all()) == entry.blobs()


def test_a_sweep_waits_for_no_save_and_removes_nothing_during_one(tmp_path: Path) -> None:
    """A save holds blobs.lock shared from its first blob to its record: blobs it wrote have no
    record yet, so a prune meanwhile removes entries but not one blob."""
    store = DirectoryStore(tmp_path)
    _three(store)
    store.remove(KEY_A)  # its own blobs are now used by no record
    blobs = set(store.blobs.all())
    with store._saving():  # another process's save under way
        assert store.sweep() == (0, 0)
        assert [e.key for e in store.prune(keep=1)] == [KEY_C]
        assert set(store.blobs.all()) == blobs
    count, _ = store.sweep()
    assert count >= 4  # A's and C's own layers, configs and manifests
    assert set(store.blobs.all()) == store.entries()[0].blobs()


def test_a_killed_saves_blobs_are_swept(tmp_path: Path) -> None:
    """A save killed after some blobs, before its record: those blobs are orphans, swept by the next
    prune; the other entries keep theirs."""
    store = DirectoryStore(tmp_path)
    kept = put(store, KEY_A, image([layer("kept")]))
    tar = save_tar([("app:dev", image([noise(200_000), layer("lost", 300_000)], "lost"))])
    cut = tar.index(b"lost layer content") + 1000  # inside the second layer
    with pytest.raises(StoreError, match="the store is unchanged"):
        store.put_images(io.BytesIO(tar[:cut]), [wanted(KEY_B, "app:dev", image([]))], [[]])
    assert store.get(KEY_B) is None
    orphans = set(store.blobs.all()) - kept.blobs()
    assert orphans  # the first layer made it in
    assert list((store.base / "tmp").iterdir()) == []
    store.prune(keep=5)
    assert set(store.blobs.all()) == kept.blobs()
    assert not any(os.path.lexists(p) and not p.exists() for p in (store.base / "diffs").iterdir())
    with loaded(store, KEY_A) as tar_a:
        assert tar_a.getnames()


def test_the_disk_full_in_a_save_leaves_no_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ENOSPC as the second blob of a save is made durable: no record, no temp file, the store as it was
    (plus the first blob, which the next prune sweeps), and the next save goes through."""
    store = DirectoryStore(tmp_path)
    kept = put(store, KEY_A, image([layer("kept")]))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").endswith("blob.partial.2"):
            raise OSError(errno.ENOSPC, "No space left on device")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    img = image([noise(100_000), noise(120_000)])
    with pytest.raises(StoreError, match="the disk is full; the store is unchanged"):
        put(store, KEY_B, img)
    monkeypatch.undo()
    assert [e.key for e in store.entries()] == [KEY_A]
    assert not store.meta_path(KEY_B).exists()
    assert list((store.base / "tmp").iterdir()) == []
    with loaded(store, KEY_A) as tar:
        assert tar.getnames()
    assert store.verify() == []
    store.prune(keep=5)
    assert set(store.blobs.all()) == kept.blobs()
    assert put(store, KEY_B, img).key == KEY_B  # and the next save goes through


def test_leftovers_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    store.ensure()
    host = socket.gethostname()
    dead = store.base / f"tmp/{'b' * 64}~{host}~999999999~abcd~blob.partial.1"
    dead.write_bytes(b"half")
    alive = store.base / f"tmp/{'c' * 64}~{host}~{os.getpid()}~abcd~blob.partial.1"
    alive.write_bytes(b"in progress")
    removed = DirectoryStore(tmp_path).clean_leftovers()
    assert dead in removed
    assert alive.exists()


def test_verify_finds_a_damaged_blob_and_removes_every_entry_that_uses_it(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    _three(store)
    shared = _layer_blob(store, noise(300_000))
    path = store.blobs.path(shared)
    data = bytearray(path.read_bytes())
    data[1000] ^= 1
    path.write_bytes(bytes(data))
    found = store.verify()
    assert sorted(e.key for e, _ in found) == [KEY_A, KEY_B, KEY_C]
    assert all("damaged" in problem for _, problem in found)
    assert store.entries() == []
    assert not path.exists()
    assert store.verify() == []


def test_verify_finds_a_missing_blob(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    entry = put(store, KEY_A, image([layer("a")]))
    put(store, KEY_B, image([layer("b")]))
    store.blobs.path(entry.manifest_digest).unlink()
    ((bad, problem),) = store.verify()
    assert bad.key == KEY_A
    assert "missing" in problem
    assert [e.key for e in store.entries()] == [KEY_B]


def test_index_json_is_an_oci_index_of_the_entries(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    prod = image([*BASE.layers, DEPS, layer("prod")], "prod")
    entry_a = put(store, KEY_A, prod, base=BASE)
    entry_b = put(store, KEY_B, image([layer("b")], "b"))
    assert json.loads((store.base / "oci-layout").read_text()) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads((store.base / "index.json").read_text())
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    by_key = {m["annotations"]["org.opencontainers.image.ref.name"]: m for m in index["manifests"]}
    assert set(by_key) == {KEY_A[7:], KEY_B[7:]}
    for entry in (entry_a, entry_b):
        descriptor = by_key[entry.hex]
        assert descriptor["digest"] == entry.manifest_digest
        blob = store.blobs.path(entry.manifest_digest).read_bytes()
        assert (sha(blob), len(blob)) == (descriptor["digest"], descriptor["size"])
        manifest = json.loads(blob)
        assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        config = store.blobs.path(manifest["config"]["digest"]).read_bytes()
        assert json.loads(config)["rootfs"]["diff_ids"]
        for layer_ in manifest["layers"]:
            kept = (layer_.get("annotations") or {}).get("org.stagecache.kept") != "false"
            if kept:
                assert store.blobs.size(layer_["digest"]) == layer_["size"]
                assert layer_["mediaType"].startswith("application/vnd.oci.image.layer.v1.tar")
    manifest_a = json.loads(store.blobs.path(entry_a.manifest_digest).read_bytes())
    kept = [(lay.get("annotations") or {}).get("org.stagecache.kept") for lay in manifest_a["layers"]]
    assert kept == ["false", None, None]  # the base's layer is listed, not kept
    store.prune(keep=1)
    index = json.loads((store.base / "index.json").read_text())
    assert len(index["manifests"]) == 1


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
    entry = put(store, KEY_A, image([layer("a")]))
    (store.blobs.dir / "notablob.tar").write_bytes(b"x")
    (store.base / "meta" / "README").write_text("hello")
    fresh = DirectoryStore(tmp_path)
    fresh.ensure()  # not fatal: every command that opens the store gets here
    assert [e.key for e in fresh.entries()] == [KEY_A]
    assert sorted(p.name for p, _ in fresh.problems()) == ["README", "notablob.tar"]
    assert sorted(p.name for p, _ in fresh.repair()) == ["README", "notablob.tar"]
    assert fresh.problems() == []
    assert entry.blobs() <= set(fresh.blobs.all())
    with loaded(fresh, KEY_A) as tar:
        assert tar.getnames()


def _members(record: dict[str, Any], edit: Any) -> dict[str, Any]:
    return {"members": edit(json.loads(json.dumps(record["members"])))}


def _layer_index(members: list[list[Any]]) -> int:
    return next(i for i, m in enumerate(members) if str(m[1]).startswith("sha256:") and m[0].endswith(".tar"))


@pytest.mark.parametrize(
    "change",
    [
        lambda r: {"stored_bytes": "12"},
        lambda r: {"new_bytes": -1},
        lambda r: {"created": True},
        lambda r: {"image_id": "not-a-digest"},
        lambda r: {"manifest_digest": "md5:" + "0" * 32},
        lambda r: {"key": KEY_B},  # a record moved to another key's name
        lambda r: {"target": None},
        lambda r: {"members": []},
        lambda r: _members(r, lambda m: [[f"../{m[0][0]}", *m[0][1:]], *m[1:]]),  # out of the tar
        lambda r: _members(r, lambda m: [["/etc/passwd", *m[0][1:]], *m[1:]]),
        lambda r: _members(r, lambda m: [*m[:-1], [m[-1][0], "inline:[]", 0, False], m[-1]]),  # twice
        lambda r: _members(r, lambda m: [x for x in m if x[0] != "manifest.json"]),
        lambda r: _members(  # a layer's content written into the record itself
            r,
            lambda m: [
                *m[: _layer_index(m)],
                [m[_layer_index(m)][0], "inline:evil", 0, False],
                *m[_layer_index(m) + 1 :],
            ],
        ),
        lambda r: _members(r, lambda m: [[m[0][0], "sha256:../../etc", *m[0][2:]], *m[1:]]),
        lambda r: _members(r, lambda m: [[*m[0][:2], -5, m[0][3]], *m[1:]]),
        lambda r: _members(r, lambda m: [[*m[0][:3], "yes"], *m[1:]]),
    ],
)
def test_a_record_that_does_not_check_is_skipped_and_repaired(tmp_path: Path, change: Any) -> None:
    store = DirectoryStore(tmp_path)
    entry = put(store, KEY_A, image([layer("a")]))
    meta = store.meta_path(KEY_A)
    record = json.loads(meta.read_text())
    meta.write_text(json.dumps({**record, **change(record)}))
    assert store.get(KEY_A) is None
    assert store.entries() == []
    ((path, reason),) = store.problems()
    assert path == meta
    assert "record" in reason
    store.prune(keep=5)  # the next prune removes it, and then the blobs only it used
    assert not meta.exists()
    assert not any(store.blobs.has(d) for d in entry.blobs())


def test_a_record_with_a_field_from_a_later_version_still_reads(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, image([layer("a")]))
    meta = store.meta_path(KEY_A)
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "signatures": ["x"]}))
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
    put(store, KEY_A, image([layer("a")]))
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
    tmp = tmp_path / "store" / "v2" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f".probe-{os.getpid()}").symlink_to(victim)  # where an old probe wrote
    DirectoryStore(tmp_path / "store").ensure()
    assert victim.read_text() == "precious"


def test_repair_leaves_another_writers_temp_files_alone(tmp_path: Path) -> None:
    """A parallel CI job's atomic write in progress is a hidden temp file in meta/: not a stray."""
    store = DirectoryStore(tmp_path)
    put(store, KEY_A, image([layer("a")]))
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
    put(store, KEY_A, image([layer("a")]))
    store.meta_path(KEY_A).write_text("{}")
    with store.lock(KEY_A):
        store.repair()
        assert store.meta_path(KEY_A).exists()
    store.repair()
    assert not store.meta_path(KEY_A).exists()
