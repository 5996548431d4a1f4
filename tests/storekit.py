"""Fake ``docker save`` tars in the three layouts engines write, and store entries made from them.

- ``classic``: Docker 20.10 (``<id>/layer.tar``, ``<config hex>.json``, ``manifest.json``);
- ``oci``: Docker 25+ with the classic image store (an OCI layout, ``blobs/sha256/<hex>`` for every
  file, layers uncompressed and so named by their diff ID, plus ``manifest.json``);
- ``containerd``: Docker with the containerd image store (``index.json`` → an image index → a manifest
  → config and gzip layers, plus ``manifest.json``).

Every name the engine would write is there (``RepoTags``, ``repositories``, name annotations), so that
tests can check the store keeps none of them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from stagecache.store.directory import DirectoryStore
from stagecache.store.entry import Entry

LAYOUTS = ("classic", "oci", "containerd")
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(seed: str, size: int = 200_000) -> bytes:
    """A layer's bytes: ``size`` bytes of a text that compresses well, unique to ``seed``."""
    line = f"{seed} layer content\n".encode()
    return (line * (size // len(line) + 1))[:size]


def noise(size: int) -> bytes:
    """Bytes that do not compress (a layer's size stays its size once stored)."""
    out = bytearray()
    block = hashlib.sha256(str(size).encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


class FakeImage(NamedTuple):
    layers: list[bytes]  # uncompressed
    config: bytes

    @property
    def diff_ids(self) -> list[str]:
        return [sha(data) for data in self.layers]

    @property
    def image_id(self) -> str:
        return sha(self.config)


def image(layers: Sequence[bytes], label: str = "x") -> FakeImage:
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"org.stagecache.test": label}},
        "rootfs": {"type": "layers", "diff_ids": [sha(data) for data in layers]},
    }
    return FakeImage(list(layers), json.dumps(config, sort_keys=True).encode())


def _add(tar: tarfile.TarFile, name: str, data: bytes, done: set[str]) -> None:
    if name in done:  # one member per name, as docker save writes a shared layer once
        return
    done.add(name)
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def save_tar(images: Sequence[tuple[str, FakeImage]], layout: str = "classic") -> bytes:
    """The tar ``docker save REF...`` writes for ``images`` (ref, image) in ``layout``."""
    out = io.BytesIO()
    manifest: list[dict[str, Any]] = []
    index: list[dict[str, Any]] = []
    done: set[str] = set()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        if layout != "classic":
            _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}', done)
        for ref, img in images:
            if layout == "classic":
                names = []
                for data in img.layers:
                    layer_id = hashlib.sha256(sha(data).encode()).hexdigest()  # the same layer, one dir
                    _add(tar, f"{layer_id}/VERSION", b"1.0", done)
                    _add(tar, f"{layer_id}/json", b'{"id":"' + layer_id.encode() + b'"}', done)
                    _add(tar, f"{layer_id}/layer.tar", data, done)
                    names.append(f"{layer_id}/layer.tar")
                config_name = img.image_id.removeprefix("sha256:") + ".json"
                _add(tar, config_name, img.config, done)
                manifest.append({"Config": config_name, "RepoTags": [ref], "Layers": names})
                continue
            gz = layout == "containerd"
            blobs = [gzip.compress(data, mtime=0) if gz else data for data in img.layers]
            for data in blobs:
                _add(tar, "blobs/sha256/" + sha(data)[7:], data, done)
            _add(tar, "blobs/sha256/" + img.image_id[7:], img.config, done)
            media = OCI_LAYER + ("+gzip" if gz else "")
            doc = {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": OCI_CONFIG, "digest": img.image_id, "size": len(img.config)},
                "layers": [{"mediaType": media, "digest": sha(d), "size": len(d)} for d in blobs],
            }
            manifest_bytes = json.dumps(doc).encode()
            _add(tar, "blobs/sha256/" + sha(manifest_bytes)[7:], manifest_bytes, done)
            top = {"mediaType": OCI_MANIFEST, "digest": sha(manifest_bytes), "size": len(manifest_bytes)}
            if gz:  # containerd: the index.json names an image index, which names the manifest
                inner = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
                    {**top, "platform": {"architecture": "amd64", "os": "linux"}}]}).encode()  # fmt: skip
                _add(tar, "blobs/sha256/" + sha(inner)[7:], inner, done)
                top = {"mediaType": OCI_INDEX, "digest": sha(inner), "size": len(inner)}
            full = ref if "/" in ref else f"docker.io/library/{ref}"
            tag = ref.rsplit(":", 1)[1]
            annotations = {"io.containerd.image.name": full, "org.opencontainers.image.ref.name": tag}
            index.append({**top, "annotations": annotations})
            manifest.append({
                "Config": "blobs/sha256/" + img.image_id[7:],
                "RepoTags": [ref],
                "Layers": ["blobs/sha256/" + sha(d)[7:] for d in blobs],
            })  # fmt: skip
        if layout != "classic":
            doc = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": index}
            _add(tar, "index.json", json.dumps(doc).encode(), done)
        _add(tar, "manifest.json", json.dumps(manifest).encode(), done)
        repositories = {ref.rsplit(":", 1)[0]: {ref.rsplit(":", 1)[1]: "x"} for ref, _ in images}
        _add(tar, "repositories", json.dumps(repositories).encode(), done)
    return out.getvalue()


def key(n: int | str) -> str:
    """A key: ``key(1)``, ``key("a")``."""
    text = f"{n:x}" if isinstance(n, int) else n
    return "sha256:" + (text * 64)[:64]


def wanted(k: str, ref: str, img: FakeImage, target: str = "t", **extra: Any) -> dict[str, Any]:
    """What ``put_images`` is told of one image (as ``DirectoryTier.publish_many`` says it)."""
    return {
        "key": k,
        "ref": ref,
        "target": target,
        "repository": ref.rsplit(":", 1)[0],
        "image_id": img.image_id,
        "manifest_sha256": "2" * 64,
        **extra,
    }


def put(
    store: DirectoryStore,
    k: str,
    img: FakeImage,
    *,
    target: str = "t",
    base: FakeImage | None = None,
    layout: str = "classic",
    ref: str = "app:dev",
) -> Entry:
    """Save one image into ``store`` under key ``k`` (``base``: its base image, its layers left out)."""
    bases = [[base.diff_ids]] if base is not None else [[]]
    tar = save_tar([(ref, img)], layout)
    (entry,) = store.put_images(io.BytesIO(tar), [wanted(k, ref, img, target)], bases)
    return entry


def put_many(
    store: DirectoryStore,
    items: Sequence[tuple[str, str, FakeImage]],
    *,
    base: FakeImage | None = None,
    layout: str = "classic",
) -> list[Entry]:
    """One save of several images: ``items`` are (key, ref, image)."""
    tar = save_tar([(ref, img) for _, ref, img in items], layout)
    bases = [[base.diff_ids] if base is not None else [] for _ in items]
    return store.put_images(io.BytesIO(tar), [wanted(k, ref, img) for k, ref, img in items], bases)


def loaded(store: DirectoryStore, k: str) -> tarfile.TarFile:
    """The tar a load of ``k`` streams, opened (its bytes read whole)."""
    entry = store.get(k)
    assert entry is not None, k
    data = b"".join(store.load_stream(entry))
    return tarfile.open(fileobj=io.BytesIO(data))


def member_bytes(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle.read()


def blob_files(store: DirectoryStore) -> set[str]:
    """The digests of the blobs on disk."""
    return set(store.blobs.all())


def tree(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())
