"""store/plan.py: a ``docker save`` tar into blobs and a load plan, and the plan back into the tar
``docker load`` reads, in the three layouts engines write (tests/storekit.py makes them)."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Iterable
from pathlib import Path

import pytest

from stagecache.store.blobs import BadBlob, Blobs
from stagecache.store.directory import CorruptEntry, DirectoryStore
from stagecache.store.plan import ForeignArchive, Member, Resave, load_stream, save_into, shared_prefix
from tests import storekit as kit
from tests.storekit import (
    LAYOUTS,
    image,
    key,
    layer,
    loaded,
    member_bytes,
    noise,
    put,
    put_many,
    save_tar,
    sha,
    wanted,
)

BASE = image([layer("base 1"), layer("base 2")], "base")


def test_shared_prefix_needs_a_whole_base() -> None:
    assert shared_prefix(["a", "b", "c"], [["a", "b"]]) == 2
    assert shared_prefix(["a", "b", "c"], [["a", "x"]]) == 0  # a partial match is no base
    assert shared_prefix(["a", "b", "c"], [["a"], ["a", "b"], ["q"]]) == 2
    assert shared_prefix(["a"], []) == 0


def _layer_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    manifest = json.loads(member_bytes(tar, "manifest.json"))
    return [tar.getmember(name) for name in manifest[0]["Layers"]]


def _blob_of(store: DirectoryStore, data: bytes, layout: str) -> str:
    """The blob that holds a layer: its gzip as the engine gave it, or the store's own."""
    if layout == "containerd":
        return sha(gzip.compress(data, mtime=0))
    known = store.blobs.known(sha(data))
    assert known is not None
    return known.digest


def _uncompressed(data: bytes) -> bytes:
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


@pytest.mark.parametrize("layout", LAYOUTS)
def test_base_layers_are_left_out_and_loaded_as_empty_members(tmp_path: Path, layout: str) -> None:
    store = DirectoryStore(tmp_path)
    mine = layer("mine")
    img = image([*BASE.layers, mine])
    entry = put(store, key(1), img, base=BASE, layout=layout)
    with loaded(store, key(1)) as tar:
        members = _layer_members(tar)
        assert [m.size for m in members[:2]] == [0, 0]  # the base's layers: empty, read by nobody
        handle = tar.extractfile(members[2])
        assert handle is not None
        assert sha(_uncompressed(handle.read())) == img.diff_ids[2]
        config = json.loads(member_bytes(tar, json.loads(member_bytes(tar, "manifest.json"))[0]["Config"]))
        assert config["rootfs"]["diff_ids"] == img.diff_ids
    assert all(store.blobs.has(d) for d in entry.blobs())
    # no blob with a base layer in it stays in the store: an OCI layout names its layers by diff ID,
    # so they are not even read; elsewhere (20.10, gzip) they are only known once read, and swept
    if layout == "oci":
        assert store.sweep(dry_run=True) == (0, 0)
    store.sweep()
    for data in BASE.layers:
        assert store.blobs.known(sha(data)) is None
        assert not store.blobs.has(sha(gzip.compress(data, mtime=0)))
    assert b"".join(store.load_stream(entry))  # and the entry still loads


@pytest.mark.parametrize("layout", LAYOUTS)
def test_the_load_stream_is_a_tar_without_names(tmp_path: Path, layout: str) -> None:
    store = DirectoryStore(tmp_path)
    img = image([layer("one"), layer("two")])
    entry = put(store, key(1), img, layout=layout, ref="registry.example:5000/team/app:dev")
    data = b"".join(store.load_stream(entry))
    assert len(data) == entry.image_bytes  # what the progress of a load counts to
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        names = tar.getnames()
        manifest = json.loads(member_bytes(tar, "manifest.json"))
        assert [m["RepoTags"] for m in manifest] == [None]
        assert "repositories" not in names
        assert len(names) == len(set(names))
        if layout != "classic":
            index = json.loads(member_bytes(tar, "index.json"))
            assert len(index["manifests"]) == 1
            assert all(not (m.get("annotations") or {}) for m in index["manifests"])
            assert "oci-layout" in names
            for name in names:  # every blob member holds what its name says
                if name.startswith("blobs/sha256/"):
                    assert sha(member_bytes(tar, name)) == "sha256:" + name.rsplit("/", 1)[1]
    assert b"registry.example" not in data
    assert b"app:dev" not in data


def test_a_containerd_save_keeps_the_chain_from_index_to_layers(tmp_path: Path) -> None:
    """index.json → image index → manifest → config and gzip layers: each a member of the plan."""
    store = DirectoryStore(tmp_path)
    img = image([layer("one"), layer("two")])
    entry = put(store, key(1), img, layout="containerd")
    with loaded(store, key(1)) as tar:
        index = json.loads(member_bytes(tar, "index.json"))
        (top,) = index["manifests"]
        assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
        inner = json.loads(member_bytes(tar, "blobs/sha256/" + top["digest"][7:]))
        manifest = json.loads(member_bytes(tar, "blobs/sha256/" + inner["manifests"][0]["digest"][7:]))
        assert manifest["config"]["digest"] == img.image_id
        for descriptor in manifest["layers"]:
            data = member_bytes(tar, "blobs/sha256/" + descriptor["digest"][7:])
            assert (sha(data), len(data)) == (descriptor["digest"], descriptor["size"])
    assert entry.image_bytes > 0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_one_save_of_two_images_makes_two_plans(tmp_path: Path, layout: str) -> None:
    store = DirectoryStore(tmp_path)
    prod = image([*BASE.layers, layer("deps"), layer("prod")], "prod")
    dev = image([*BASE.layers, layer("deps"), layer("dev")], "dev")
    first, second = put_many(store, [(key(1), "app:prod", prod), (key(2), "app:dev", dev)], base=BASE,
                             layout=layout)  # fmt: skip
    for k, img in ((key(1), prod), (key(2), dev)):
        with loaded(store, k) as tar:
            manifest = json.loads(member_bytes(tar, "manifest.json"))
            assert len(manifest) == 1
            assert sha(member_bytes(tar, manifest[0]["Config"])) == img.image_id
            if layout != "classic":
                assert len(json.loads(member_bytes(tar, "index.json"))["manifests"]) == 1
    deps = _blob_of(store, prod.layers[2], layout)
    assert deps in first.blobs()
    assert deps in second.blobs()  # the deps layer, kept once for both
    # what the save added, each blob counted once: the deps layer goes to the first image's account
    assert first.new_bytes + second.new_bytes == store.total_bytes()
    assert second.new_bytes == sum(store.blobs.size(d) for d in second.blobs() - first.blobs())


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_layer_listed_twice_is_one_member(tmp_path: Path, layout: str) -> None:
    """The same layer at two places of one image: docker save writes it once (on OCI layouts under
    one name), and the plan lists it once, or the record would not check."""
    store = DirectoryStore(tmp_path)
    again = layer("again")
    img = image([again, layer("mine"), again])
    entry = put(store, key(1), img, layout=layout)
    got = store.get(key(1))
    assert got is not None
    assert got.members == entry.members
    assert store.problems() == []
    with loaded(store, key(1)) as tar:
        names = tar.getnames()
        assert len(names) == len(set(names))
        members = _layer_members(tar)
        handle = tar.extractfile(members[2])
        assert handle is not None
        assert sha(_uncompressed(handle.read())) == img.diff_ids[2]


def test_a_base_layer_needed_further_up_asks_for_a_resave(tmp_path: Path) -> None:
    """On an OCI layout a layer is one member whatever its places: left out for the base, it cannot
    also be loaded further up. ``Resave``; and a save without bases keeps it."""
    store = DirectoryStore(tmp_path)
    img = image([*BASE.layers, layer("mine"), BASE.layers[0]])
    with pytest.raises(Resave):
        put(store, key(1), img, base=BASE, layout="oci")
    assert store.get(key(1)) is None
    entry = put(store, key(1), img, layout="oci")
    with loaded(store, key(1)) as tar:
        sizes = [m.size for m in _layer_members(tar)]
    assert sizes[0] == len(BASE.layers[0])
    got = store.get(key(1))
    assert got is not None
    assert got.members == entry.members


@pytest.mark.parametrize("how", ["damaged", "missing"])
def test_a_bad_blob_raises_on_load_and_the_entry_goes(tmp_path: Path, how: str) -> None:
    store = DirectoryStore(tmp_path)
    img = image([noise(300_000)])
    entry = put(store, key(1), img)
    blob = next(d for n, d, s, c in entry.members if s == 300_000)
    path = store.blobs.path(blob)
    if how == "damaged":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.unlink()
    with pytest.raises(CorruptEntry, match=how):
        b"".join(store.load_stream(entry))
    assert store.get(key(1)) is None
    assert not path.exists()


def test_a_damaged_compressed_blob_is_caught_as_it_is_read(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path, tmp_path)
    blobs.ensure()
    stored = blobs.put_bytes(layer("x", 500_000), tmp_path / "t")
    assert stored.compressed
    path = blobs.path(stored.digest)
    data = bytearray(path.read_bytes())
    data[-8] ^= 0xFF  # in the frame's checksum
    path.write_bytes(bytes(data))
    plan = [Member("layer.tar", stored.digest, 500_000, True)]
    with pytest.raises(BadBlob):
        b"".join(load_stream(plan, blobs))
    assert not path.exists()


def test_a_plan_whose_sizes_are_wrong_is_refused(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path, tmp_path)
    blobs.ensure()
    stored = blobs.put_bytes(b"small", tmp_path / "t")
    for size in (4, 6):
        with pytest.raises(ForeignArchive):
            b"".join(load_stream([Member("x", stored.digest, size)], blobs))


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (["manifest.json", "inline:[]"], "lists 0 images"),
        (["manifest.json", 'inline:[{"Config":"c"},{"Config":"d"}]'], "lists 2 images"),
        (["manifest.json", 'inline:["x"]'], "does not describe an image"),
        (["index.json", 'inline:{"manifests":[]}'], "lists 0 images"),
    ],
)
def test_the_naming_files_are_checked_as_they_are_read(tmp_path: Path, member: list[str], said: str) -> None:
    blobs = Blobs(tmp_path, tmp_path)
    with pytest.raises(ForeignArchive, match=said):
        b"".join(load_stream([Member(member[0], member[1], 0)], blobs))


def test_names_written_into_a_record_never_reach_the_load(tmp_path: Path) -> None:
    blobs = Blobs(tmp_path, tmp_path)
    manifest = json.dumps([{"Config": "c", "RepoTags": ["python:3.11-slim"], "Layers": []}])
    index = json.dumps({"manifests": [{"digest": "sha256:" + "1" * 64, "annotations": {
        "io.containerd.image.name": "docker.io/library/python:3.11-slim",
        "org.opencontainers.image.ref.name": "3.11-slim", "other": "kept"}}]})  # fmt: skip
    plan = [Member("manifest.json", "inline:" + manifest, 0), Member("index.json", "inline:" + index, 0)]
    data = b"".join(load_stream(plan, blobs))
    assert b"python" not in data
    assert b"3.11-slim" not in data
    assert b'"other":"kept"' in data


@pytest.mark.parametrize(
    "tar",
    [
        b"not a tar at all" * 100,
        save_tar([("a:1", image([layer("x")]))])[:0] + b"\0" * 1024,  # an empty tar: no manifest.json
    ],
)
def test_what_is_not_a_save_is_refused(tmp_path: Path, tar: bytes) -> None:
    blobs = Blobs(tmp_path, tmp_path / "tmp")
    blobs.ensure()
    (tmp_path / "tmp").mkdir()
    with pytest.raises(ForeignArchive):
        save_into(io.BytesIO(tar), ["a:1"], blobs, [[]], tmp_path / "tmp" / "t")


def test_a_save_that_lacks_the_asked_image_is_refused(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    a, b = image([layer("a")], "a"), image([layer("b")], "b")
    tar = save_tar([("app:a", a), ("app:b", b)])
    with pytest.raises(ForeignArchive, match="does not list app:c"):
        store.put_images(io.BytesIO(tar), [wanted(key(1), "app:c", a)], [[]])
    assert store.entries() == []


@pytest.mark.parametrize("layout", ["classic", "containerd"])
def test_a_base_layer_named_otherwise_than_by_its_diff_id_is_not_kept(tmp_path: Path, layout: str) -> None:
    """20.10 names a layer <id>/layer.tar and containerd by its compressed digest: the base's layer is
    known only once read, and still leaves no blob behind (nor, on 20.10, a compressed copy)."""
    store = DirectoryStore(tmp_path / "store")
    base = kit.image([kit.layer("base", 300_000)], "base")
    app = kit.image([*base.layers, kit.layer("app", 100_000)], "app")
    entry = kit.put(store, kit.key(1), app, base=base, layout=layout)
    kept = {m[1] for m in entry.members if m[1].startswith("sha256:")}
    assert kit.blob_files(store) == kept | {entry.manifest_digest}  # nothing else written, nothing to sweep
    assert not any(store.blobs.known(d) for d in base.diff_ids)
    assert [m[2] for m in entry.members if m[1] == ""] == [0]  # the base layer: an empty member
    assert list((store.base / "tmp").iterdir()) == []


def _sizes(stream: Iterable[bytes]) -> dict[str, int]:
    with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
        return {m.name: m.size for m in tar}


@pytest.mark.parametrize("layout", kit.LAYOUTS)
def test_layers_of_an_image_the_daemon_has_go_as_empty_members(tmp_path: Path, layout: str) -> None:
    """A target loaded after its stage: the stage's layers are in the daemon, only the target's go."""
    store = DirectoryStore(tmp_path / "store")
    base = kit.image([kit.layer("base")], "base")
    deps = kit.image([*base.layers, kit.layer("deps")], "deps")
    app = kit.image([*deps.layers, kit.layer("app")], "app")
    entry = kit.put(store, kit.key(1), app, base=base, layout=layout)
    whole = _sizes(store.load_stream(entry))
    sizes = _sizes(store.load_stream(entry, [deps.diff_ids]))
    emptied = sorted(name for name, size in sizes.items() if size == 0 and whole[name] > 0)
    assert len(emptied) == 1  # the deps layer; the app layer, the config and the rest are sent
    assert sum(sizes.values()) < sum(whole.values())
    # an image the daemon has that is not a prefix of this one gives nothing
    other = kit.image([*base.layers, kit.layer("other")], "other")
    assert _sizes(store.load_stream(entry, [other.diff_ids])) == whole


def _tar_layer(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.mark.parametrize("layout", ["classic", "oci"])
def test_a_small_layer_is_kept_compressed_and_a_config_as_it_is(tmp_path: Path, layout: str) -> None:
    """A one-line edit's layer is a few kB of tar headers and padding: zstd keeps a fraction of it;
    the config stays plain JSON (OCI tools read it)."""
    store = DirectoryStore(tmp_path / "store")
    small = _tar_layer({"app/main.py": b"print('v2')\n"})
    assert len(small) < 64 << 10
    img = kit.image([small], "small")
    entry = kit.put(store, kit.key(1), img, layout=layout)
    layer_blob = next(m for m in entry.members if m[2] == len(small))
    assert layer_blob[3] is True
    assert store.blobs.size(layer_blob[1]) < len(small) / 4
    assert store.blobs.known(img.diff_ids[0]) is not None  # found again by its diff ID
    config = next(m for m in entry.members if m[2] == len(img.config))
    assert config[3] is False
    assert store.blobs.path(config[1]).read_bytes() == img.config
    with kit.loaded(store, kit.key(1)) as tar:  # and it loads back byte for byte
        assert kit.member_bytes(tar, layer_blob[0]) == small


def test_a_layer_docker_2010_writes_as_a_link_to_its_first_copy_is_kept_and_loads(tmp_path: Path) -> None:
    """20.10's save writes a layer it has written already (the same layer again, further up) as a
    symlink to the first copy; the plan gives the link's member the same blob."""
    store = DirectoryStore(tmp_path / "store")
    same, other = _tar_layer({"a": b"1"}), _tar_layer({"b": b"2"})
    img = kit.image([same, other, same], "twice")
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        add("l1/layer.tar", same)
        add("l2/layer.tar", other)
        link = tarfile.TarInfo("l3/layer.tar")
        link.type, link.linkname = tarfile.SYMTYPE, "../l1/layer.tar"
        tar.addfile(link)
        add("cfg.json", img.config)
        layers = ["l1/layer.tar", "l2/layer.tar", "l3/layer.tar"]
        add(
            "manifest.json",
            json.dumps([{"Config": "cfg.json", "RepoTags": ["x:1"], "Layers": layers}]).encode(),
        )
    store.put_images(io.BytesIO(out.getvalue()), [kit.wanted(kit.key(1), "x:1", img)], [[]])
    with kit.loaded(store, kit.key(1)) as tar:
        assert kit.member_bytes(tar, "l3/layer.tar") == same
        assert kit.member_bytes(tar, "l1/layer.tar") == same
