"""What a context file contributes to a key: the BLAKE3 digest of its content, and the stat signature
that tells whether it can have changed since it was hashed (the digest caches in
:mod:`stagecache.speed` remember digests by it)."""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from pathlib import Path

from blake3 import blake3

WHOLE = 16 << 20  # files up to this size are read in one piece
CHUNK = 4 << 20
THREADED = 1 << 20  # from this size a file is hashed on every core


# A file's stat signature, packed: size, mtime_ns, ctime_ns, inode. Bytes, not a tuple of ints: 64-bit
# ints are the slowest thing marshal reads, and bytes compare in one call.
SIGNATURE = struct.Struct("<qqqQ")


def signature(st: os.stat_result) -> bytes:
    return SIGNATURE.pack(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def file_digest(path: str, size: int = -1) -> str:
    """The BLAKE3 digest of a file's content, as 64 hex digits.

    ``size`` is what the caller's ``stat`` said, or -1. The file is read with one ``read`` of that
    size plus one byte: a file of the size expected needs no second call to find its end. Plain
    descriptors, not file objects: for 20,000 small files the objects alone cost a tenth of a second.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if size < 0:
            size = os.fstat(fd).st_size
        if size > WHOLE:
            digest = blake3(max_threads=blake3.AUTO)
            while chunk := os.read(fd, CHUNK):
                digest.update(chunk)
            return digest.hexdigest()
        data = os.read(fd, size + 1)
        if len(data) != size:  # it changed since its stat: read to the end, whatever is there now
            parts = [data]
            while more := os.read(fd, CHUNK):
                parts.append(more)
            data = b"".join(parts)
    finally:
        os.close(fd)
    return blake3(data, max_threads=blake3.AUTO if len(data) >= THREADED else 1).hexdigest()


class Uncached:
    """File digests with nothing remembered: the :class:`~stagecache.key.ports.FileDigests` of a key
    computed without a cache (each file is read and hashed)."""

    changed = False

    def __init__(self, root: Path) -> None:
        self.prefix = os.path.join(root, "")

    def digests(self, files: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
        return {rel: file_digest(self.prefix + rel) for rel, _ in files}

    def retain(self, paths: Iterable[str]) -> None:
        pass
