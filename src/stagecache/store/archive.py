"""Thin image archives: a ``docker save`` tar without the layers every loading daemon already has.

A key covers the identity (image ID) of each base image, and computing a key needs that image in the
daemon. So wherever a stored key can be loaded, the layers of its base image are already there, and
``docker load`` skips a layer whose chain it already has without reading its file. A thin archive
keeps those layers' ``layer.tar`` members as empty files: an image on ``python:3.11-slim`` stores and
loads its own layers only, not the 200-odd MB of the base it shares with every other entry.
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple


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
            for member in tar:
                if member.name in skip and member.isfile():
                    empty = copy.copy(member)
                    empty.size = 0
                    target.addfile(empty, io.BytesIO(b""))
                else:
                    target.addfile(member, tar.extractfile(member) if member.isfile() else None)
    return Thinned(out.size, shared, layers)


def _member(tar: tarfile.TarFile, name: str) -> io.BufferedReader:
    handle = tar.extractfile(name)
    if handle is None:
        raise ValueError(f"{name} is not a file in the docker save archive")
    return handle  # type: ignore[return-value]
