"""Content digests of context files, with a stat cache like git's index.

Hashing every file of a large context on every run would cost as much as reading it. The cache
remembers, per file, the ``stat`` fields that change whenever its content can have changed (size,
mtime, ctime, inode) and the digest computed then. A file whose stat fields match is not read again.
A file modified just before it was hashed could change again within the same clock tick without its
mtime changing ("racily clean", as git calls it): such a file's digest is used but not remembered.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHUNK = 1 << 20
WHOLE = 16 << 20  # files up to this size are read in one piece
RACY_NS = 2_000_000_000  # a file changed less than 2 s before it was hashed is not remembered
_VERSION = 2


def sha256_file(path: Path | str) -> str:
    with open(path, "rb", buffering=0) as fh:
        if os.fstat(fh.fileno()).st_size <= WHOLE:
            # One read of exactly the file's size: for the many small files of a source tree this is
            # half the cost of reading in fixed-size chunks (no over-sized buffer to allocate per file).
            return hashlib.sha256(fh.readall()).hexdigest()
        digest = hashlib.sha256()
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _signature(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


@dataclass
class DigestCache:
    """Digests of the files under one root. ``path`` is where the cache is kept (None: in memory)."""

    root: Path
    path: Path | None = None
    _entries: dict[str, list[Any]] = field(default_factory=dict)  # relpath -> [signature, digest]
    _dirty: bool = False

    @classmethod
    def open(cls, root: Path, path: Path | None) -> DigestCache:
        cache = cls(root=root, path=path)
        if path is not None:
            try:
                data = json.loads(path.read_text())
                if data.get("version") == _VERSION and data.get("root") == str(root):
                    cache._entries = data["entries"]  # as stored: no per-entry conversion
            except (OSError, ValueError, KeyError, TypeError):
                cache._entries = {}
        return cache

    def digests(self, files: list[tuple[str, tuple[int, ...]]]) -> dict[str, str]:
        """``{relpath: sha256 hex}`` for regular files under the root.

        Each file comes with its stat signature (size, mtime_ns, ctime_ns, inode) when the caller has
        one from its own walk; an empty signature means "stat it here".
        """
        out: dict[str, str] = {}
        todo: list[tuple[str, list[int]]] = []
        for rel, given in files:
            sig = list(given) if given else _signature(os.lstat(self.root / rel))
            known = self._entries.get(rel)
            if known is not None and known[0] == sig:
                out[rel] = known[1]
            else:
                todo.append((rel, sig))
        if todo:
            # A file changed within the last clock tick or two could change again without its mtime
            # moving ("racily clean", as git calls it): its digest is used now but not remembered.
            settled_before = time.time_ns() - RACY_NS
            hashed = [sha256_file(os.path.join(self.root, rel)) for rel, _ in todo]
            for (rel, sig), digest in zip(todo, hashed, strict=True):
                out[rel] = digest
                if sig[1] < settled_before and sig[2] < settled_before:
                    self._entries[rel] = [sig, digest]
                    self._dirty = True
        return out

    def save(self) -> None:
        """Write the cache atomically; failures are ignored (it is only a cache)."""
        if self.path is None or not self._dirty:
            return
        data = {
            "version": _VERSION,
            "root": str(self.root),
            "entries": self._entries,
        }
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".digests-", suffix=".tmp")
            with os.fdopen(fd, "w") as fh:
                fh.write(
                    json.dumps(data, separators=(",", ":"))
                )  # one C-encoded string: far faster than dump
            os.replace(tmp, self.path)
        except OSError:
            return
        self._dirty = False
