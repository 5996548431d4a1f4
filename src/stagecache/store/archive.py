"""Thin image archives: a ``docker save`` tar without the layers every loading daemon already has.

A key covers the identity (image ID) of each base image, and computing a key needs that image in the
daemon. So wherever a stored key can be loaded, the layers of its base image are already there, and
``docker load`` skips a layer whose chain it already has without reading its file. A thin archive
keeps those layers' ``layer.tar`` members as empty files: an image on ``python:3.11-slim`` stores and
loads its own layers only, not the 200-odd MB of the base it shares with every other entry.

Archives carry no image names: ``manifest.json`` lists no ``RepoTags``, the legacy ``repositories``
file is left out, and an OCI ``index.json`` loses its name annotations. A stored entry then belongs
to no repository: a checkout with another folder name (another default repository) loads it and
tags it with the name it asks for, and a load never moves a tag that stagecache did not ask for.
"""

from __future__ import annotations

import copy
import io
import json
import posixpath
import tarfile
from collections.abc import Callable, Container, Iterable, Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import StoreError
from .files import threaded

STREAM = 1 << 20  # record size of the streams tarfile reads and writes here


class Thinned(NamedTuple):
    bytes: int  # size of the tar written
    shared_layers: int  # leading layers left empty because a base image provides them
    layers: int


class _Sink(io.RawIOBase):
    """A write-only file object over a callable, for ``tarfile``'s stream mode."""

    def __init__(self, sink: Callable[[bytes], None]) -> None:
        self.sink = sink
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self.sink(bytes(data))
        self.size += len(data)
        return len(data)


def shared_prefix(diff_ids: Sequence[str], bases: Sequence[Sequence[str]]) -> int:
    """How many leading layers of an image one of its base images already provides."""
    best = 0
    for base in bases:
        n = 0
        for mine, theirs in zip(diff_ids, base, strict=False):
            if mine != theirs:
                break
            n += 1
        if n == len(base):  # only a whole base counts: its full chain is what the daemon has
            best = max(best, n)
    return best


def write_thin(source: Path, sink: Callable[[bytes], None], bases: Sequence[Sequence[str]]) -> Thinned:
    """Copy the ``docker save`` tar at ``source`` into ``sink``, emptying the layers ``bases`` provide."""
    out = _Sink(sink)
    with tarfile.open(source, mode="r:") as tar:
        manifest = json.load(_member(tar, "manifest.json"))
        skip: set[str] = set()
        shared = layers = 0
        if len(manifest) == 1:
            config = json.load(_member(tar, manifest[0]["Config"]))
            paths = list(manifest[0]["Layers"])
            layers = len(paths)
            shared = shared_prefix(config["rootfs"]["diff_ids"], bases)
            skip = set(paths[:shared])
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as target:
            _copy_unnamed(tar, target, emptied=skip)
    return Thinned(out.size, shared, layers)


def _copy_unnamed(source: tarfile.TarFile, target: tarfile.TarFile, emptied: Container[str] = ()) -> None:
    """Copy a ``docker save`` archive without its names: the legacy ``repositories`` file left out,
    ``manifest.json`` and ``index.json`` rewritten without them (each must be one regular file that
    lists one image), the members in ``emptied`` copied as empty files. Names are read as docker load
    and containerd read them (``./manifest.json`` is ``manifest.json``). Both a save into the store
    and a load from it go through here; :class:`ForeignArchive` when the archive is not one image."""
    seen: set[str] = set()
    for member in source:
        name = posixpath.normpath(member.name.lstrip("/"))
        if name == "repositories":
            continue
        if name in NAMED:
            if name in seen or not member.isfile():
                raise ForeignArchive(f"its {name} is not one regular file")
            seen.add(name)
            handle = source.extractfile(member)
            data = handle.read() if handle is not None else b""
            _check_one_image(name, data)
            member.name = name
            _add_bytes(target, member, _without_names(name, data))
        elif name in emptied and member.isfile():
            empty = copy.copy(member)
            empty.size = 0
            target.addfile(empty, io.BytesIO(b""))
        else:
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
    if "manifest.json" not in seen:
        raise ForeignArchive("it has no manifest.json")


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    handle = tar.extractfile(name)
    if handle is None:
        raise ValueError(f"{name} is not a file in the docker save archive")
    return handle  # type: ignore[return-value]


# Members that name the image, and the annotations of an OCI index that do.
NAMED = ("manifest.json", "index.json")
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def _without_names(name: str, data: bytes) -> bytes:
    """``manifest.json`` without ``RepoTags``, ``index.json`` without name annotations."""
    doc = json.loads(data)
    if name == "manifest.json":
        for image in doc:
            image["RepoTags"] = None
    else:
        for manifest in doc.get("manifests") or ():
            annotations = manifest.get("annotations") or {}
            for key in NAME_ANNOTATIONS:
                annotations.pop(key, None)
    return json.dumps(doc, separators=(",", ":")).encode()


def _add_bytes(target: tarfile.TarFile, member: tarfile.TarInfo, data: bytes) -> None:
    rewritten = copy.copy(member)
    rewritten.size = len(data)
    target.addfile(rewritten, io.BytesIO(data))


class ForeignArchive(StoreError):
    """An archive that is not one image as stagecache saves them (more than one image, none)."""


class _ChunkReader(io.RawIOBase):
    """A read-only file object over an iterator of byte chunks, for ``tarfile``'s stream mode. Reads
    are served from a view of the current chunk (slicing the bytes would copy the rest on every read)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._view:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._view = memoryview(chunk)
        n = min(len(buffer), len(self._view))
        buffer[:n] = self._view[:n]
        self._view = self._view[n:]
        return n


def unnamed(chunks: Iterable[bytes], depth: int = 8) -> Iterator[bytes]:
    """A ``docker save`` stream on its way into ``docker load``, with every name taken out.

    Whoever can write a store can write its archives: one could list other images, or tags (``python:
    3.11-slim``) that ``docker load`` would move. What passes here holds exactly one image and no
    name; the loaded image is then found by the ID its record gives, and tagged by stagecache alone.
    The copy runs in a thread of its own, a few chunks ahead (a layer is never held whole in memory);
    :class:`ForeignArchive` is raised to the consumer when the archive is not one image.
    """

    def copy_without_names(put: Callable[[bytes], None]) -> None:
        try:
            # 1 MiB records: tarfile's stream default (10 KiB) costs a call per 10 KiB of layer
            source = tarfile.open(fileobj=_ChunkReader(chunks), mode="r|", bufsize=STREAM)  # noqa: SIM115
            sink = tarfile.open(fileobj=_Sink(put), mode="w|", format=tarfile.PAX_FORMAT, bufsize=STREAM)  # noqa: SIM115
            with source, sink as target:
                _copy_unnamed(source, target)
        except (tarfile.TarError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise ForeignArchive(f"it is not a docker save archive ({exc})") from None

    return threaded(copy_without_names, "stagecache-unnamed", depth)


def _check_one_image(name: str, data: bytes) -> None:
    try:
        doc = json.loads(data)
    except ValueError:
        raise ForeignArchive(f"its {name} is not JSON") from None
    images = doc if name == "manifest.json" else (doc.get("manifests") if isinstance(doc, dict) else None)
    if not isinstance(images, list) or len(images) != 1:
        count = len(images) if isinstance(images, list) else "no"
        raise ForeignArchive(f"its {name} lists {count} images, not the one its record names")
    if not isinstance(images[0], dict):
        raise ForeignArchive(f"its {name} does not describe an image")
