"""Content digests of context files, with a stat cache like git's index.

A file's digest is its BLAKE3 hash: a cryptographic hash, like the sha256 Docker uses for layers, but
about four times as fast per core here (4 GB/s against 1 GB/s with SHA-NI), and it hashes one large
file on every core. The first key of a large context is bound by this speed.

Hashing every file of a large context on every run would cost as much as reading it. The cache
remembers, per file, the ``stat`` fields that change whenever its content can have changed (size,
mtime, ctime, inode) and the digest computed then. A file whose stat fields match is not read again.
A file modified just before it was hashed could change again within the same clock tick without its
mtime changing ("racily clean", as git calls it): such a file's digest is used but not remembered.

The cache file is in ``marshal`` format: it loads about ten times faster than JSON, which matters
when a repeat key of 20,000 files must take a fifth of a second. It is private to one user's cache
directory; one from another Python version, or any file that does not load, is ignored.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from blake3 import blake3

from .. import process
from ..key.files import SIGNATURE, file_digest, signature

if TYPE_CHECKING:
    import subprocess

RACY_NS = 2_000_000_000  # a file changed less than 2 s before it was hashed is not remembered
_HEADER = ("stagecache digests", 5, sys.version_info[:2])

# --- hashing on every core -------------------------------------------------------------------------
PER_FILE_S = 15e-6  # what reading and hashing one more small file costs in-process here
PER_BYTE_S = 1 / 1.2e9  # and one more byte
HELPER_S = 0.04  # what starting a helper process costs (interpreter, imports)


def hash_files(prefix: str, items: Sequence[tuple[str, int]]) -> list[str]:
    """The digests of ``prefix + rel`` for each ``(rel, size)``, in order.

    Work that would take more than a few helper start-ups is shared with helper processes, one per
    further core (``STAGECACHE_HASH_WORKERS`` sets how many; 0 turns them off): see
    :mod:`stagecache.speed.hashworker`. Without them, or if one fails, this process hashes everything.
    """
    shares = _shares(items, _helpers_for(items))
    if len(shares) == 1:
        return [file_digest(prefix + rel, size) for rel, size in items]
    out: list[str] = [""] * len(items)
    helpers: list[tuple[subprocess.Popen[bytes] | None, list[int]]] = []
    try:
        for share in shares[1:]:
            if share:
                helpers.append((_start_helper(prefix, [items[i] for i in share]), share))
        for i in shares[0]:
            out[i] = file_digest(prefix + items[i][0], items[i][1])
        for proc, share in helpers:
            done = _helper_result(proc, len(share))
            for i, digest in zip(share, done or (None,) * len(share), strict=True):
                out[i] = digest or file_digest(prefix + items[i][0], items[i][1])
    finally:
        for proc, _ in helpers:
            if proc is not None:
                _reap(proc)
    return out


def _helpers_for(items: Sequence[tuple[str, int]]) -> int:
    """``STAGECACHE_HASH_WORKERS`` if set; else one per further core, while each saves twice its cost."""
    configured = os.environ.get("STAGECACHE_HASH_WORKERS", "").strip()
    if configured.isdigit():
        return int(configured)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    work = len(items) * PER_FILE_S + sum(size for _, size in items) * PER_BYTE_S
    return max(0, min(cores - 1, 7, int(work / (3 * HELPER_S))))


def _shares(items: Sequence[tuple[str, int]], helpers: int) -> list[list[int]]:
    """Indexes of ``items`` in ``helpers + 1`` runs of about equal work, in order.

    This process starts at once and each helper :data:`HELPER_S` late, so this process's run is longer
    by that much. Runs of neighbours, not a balanced deal of the largest first: the items come in
    directory order, and sorting 20,000 of them cost more than what it balanced.
    """
    if helpers <= 0:
        return [list(range(len(items)))]
    cost = [PER_FILE_S + size * PER_BYTE_S for _, size in items]
    each = max(0.0, (sum(cost) - HELPER_S) / (helpers + 1))  # a helper's share; this process's is longer
    shares: list[list[int]] = [[] for _ in range(helpers + 1)]
    limit, share, done = each + HELPER_S, 0, 0.0
    for i, c in enumerate(cost):
        while done >= limit and share < helpers:
            share += 1
            limit += each
        shares[share].append(i)
        done += c
    return shares


def _start_helper(prefix: str, items: list[tuple[str, int]]) -> subprocess.Popen[bytes] | None:
    request = b"".join(b"%d\0%s\0" % (size, os.fsencode(rel)) for rel, size in items)
    # The request goes in a file, not a pipe: a pipe holds 64 KiB, and writing the rest would wait
    # for the helper's interpreter to start reading (tens of ms on the benchmark machine).
    try:
        fd = _request_file(request)
    except OSError:
        return None
    try:
        return process.spawn(
            [sys.executable, "-m", "stagecache.speed.hashworker", prefix],
            stdin=fd, stdout=process.PIPE, stderr=process.DEVNULL,
        )  # fmt: skip
    except OSError:
        return None
    finally:
        os.close(fd)


def _request_file(data: bytes) -> int:
    """A descriptor of an unnamed file holding ``data``, positioned at its start."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("stagecache-request", os.MFD_CLOEXEC)
    else:  # not Linux: a temporary file, already unlinked
        import tempfile

        with tempfile.TemporaryFile() as tmp:
            fd = os.dup(tmp.fileno())
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        os.close(fd)
        raise
    return fd


def _helper_result(proc: subprocess.Popen[bytes] | None, count: int) -> list[str] | None:
    """A helper's digests, once it is done; None if it failed."""
    if proc is None:
        return None
    assert proc.stdout is not None
    out = proc.stdout.read()  # its only pipe: stdin is closed, stderr goes nowhere
    lines = out.decode("ascii", "replace").split()
    return lines if proc.wait() == 0 and len(lines) == count else None


def _reap(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    for pipe in (proc.stdin, proc.stdout):
        if pipe is not None:
            pipe.close()


class DigestCache:
    """Digests of the files under ``root``, remembered in the file ``path`` (None: in memory only).

    Two levels. Per file: its signature and digest, for a context where some files changed. Per
    selection (the sorted list of files one target reads): all their signatures as one byte string and
    their digests, so a repeat with nothing changed costs one comparison instead of a lookup per file.
    The per-file table is only unpacked when a selection's snapshot does not match.
    """

    SNAPSHOTS = 8  # selections remembered (a context is usually shared by a few targets)

    def __init__(self, root: Path, path: Path | None = None) -> None:
        self.root = root
        self.path = path
        self._packed: bytes | None = None  # the per-file table as read, until it is needed
        self._entries: dict[str, bytes] = {}  # relpath -> signature + hex digest
        self._snapshots: dict[str, tuple[bytes, list[str]]] = {}  # selection -> (signatures, digests)
        self._dirty = False
        self._unread = False  # open() leaves the file to be read on first use

    @classmethod
    def open(cls, root: Path, path: Path | None) -> DigestCache:
        """The cache kept in ``path``, read when it is first needed (a watched key may not need it)."""
        cache = cls(root, path)
        cache._unread = path is not None
        return cache

    def _read(self) -> None:
        self._unread = False
        assert self.path is not None
        try:
            # the user's own cache file (see above); marshal.load(fh) would read it bytewise
            header, stored_root, packed, snapshots = marshal.loads(self.path.read_bytes())  # noqa: S302
            if header == _HEADER and stored_root == str(self.root) and isinstance(packed, bytes):
                self._packed = packed
                self._snapshots = {
                    selection: (sigs, digests)
                    for selection, (sigs, digests) in snapshots.items()
                    if isinstance(sigs, bytes) and isinstance(digests, list)
                }
        except (OSError, EOFError, ValueError, TypeError, AttributeError):
            pass  # no cache yet, or not one this version wrote: start empty

    def digests(self, files: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
        """``{relpath: digest}`` for regular files under the root.

        Each file comes with its packed stat signature (:func:`signature`) when the caller has one
        from its own walk; None means "stat it here".
        """
        if self._unread:
            self._read()
        prefix = os.path.join(self.root, "")
        paths = [rel for rel, _ in files]
        signatures = b"".join(
            [given if given is not None else signature(os.lstat(prefix + rel)) for rel, given in files]
        )
        selection = blake3("\0".join(paths).encode("utf-8", "surrogateescape")).hexdigest()
        snapshot = self._snapshots.get(selection)
        if snapshot is not None and snapshot[0] == signatures:
            return dict(zip(paths, snapshot[1], strict=True))

        known = self._unpacked()
        width = SIGNATURE.size
        settled_before = time.time_ns() - RACY_NS
        out: dict[str, str] = {}
        all_settled = True
        todo: list[tuple[str, bytes, tuple[int, int, int, int]]] = []
        # the fields of every signature, unpacked in one call: only those of files to hash are used
        for index, (rel, fields) in enumerate(zip(paths, SIGNATURE.iter_unpack(signatures), strict=True)):
            sig = signatures[index * width : (index + 1) * width]
            entry = known.get(rel)
            if entry is not None and entry.startswith(sig):
                out[rel] = entry[width:].decode()
            else:
                todo.append((rel, sig, fields))
        hashed = hash_files(prefix, [(rel, fields[0]) for rel, _, fields in todo])
        for (rel, sig, (_, mtime_ns, ctime_ns, _)), digest in zip(todo, hashed, strict=True):
            out[rel] = digest
            if mtime_ns < settled_before and ctime_ns < settled_before:
                known[rel] = sig + digest.encode()
            else:
                all_settled = False
        self._snapshots.pop(selection, None)
        if all_settled:  # a racy file must be looked at again next time: no snapshot vouches for it
            self._snapshots[selection] = (signatures, [out[rel] for rel in paths])
            while len(self._snapshots) > self.SNAPSHOTS:
                del self._snapshots[next(iter(self._snapshots))]
        self._dirty = True
        return out

    @property
    def changed(self) -> bool:
        """Whether :meth:`save` has something to write."""
        return self._dirty

    def retain(self, paths: Iterable[str]) -> None:
        """Forget the files not in ``paths`` (the context's files now): the table must not grow with
        every file that ever existed in the context."""
        keep = set(paths)
        entries = self._unpacked()
        gone = [rel for rel in entries if rel not in keep]
        for rel in gone:
            del entries[rel]
        self._dirty = self._dirty or bool(gone)

    def _unpacked(self) -> dict[str, bytes]:
        if self._unread:
            self._read()
        if self._packed is not None:
            try:
                entries = marshal.loads(self._packed)  # noqa: S302 -- as in open()
                self._entries = entries if isinstance(entries, dict) else {}
            except (EOFError, ValueError, TypeError):
                self._entries = {}
            self._packed = None
        return self._entries

    def save(self) -> None:
        """Write the cache atomically; failures are ignored (it is only a cache)."""
        if self.path is None or not self._dirty:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        packed = self._packed if self._packed is not None else marshal.dumps(self._entries)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(marshal.dumps((_HEADER, str(self.root), packed, self._snapshots)))
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return
        self._dirty = False
