"""The local directory store: zstd-compressed image archives, one per key.

Layout under the store root (``v1/`` so a later format can live beside it)::

    objects/<hex>.tar.zst   the output of ``docker save``, compressed
    meta/<hex>.json         the record of one entry; written last, so it is the commit point
    targets/<name>.json     the manifest of the last build of each target (``key --why``; see records.py)
    passes/<hex>.json       test runs that passed (``test --skip-passed``; see records.py)
    tmp/                    archives being written; named so that leftovers can be recognised
    locks/<hex>.lock        one flock per key: one writer at a time, readers never see a partial file

An archive is written to ``tmp/``, fsynced, then renamed into ``objects/``; only then is its metadata
written (atomically too). A reader trusts an archive only through its metadata, and checks the
archive's digest while it streams it. A process killed at any point leaves the store as it was, plus
at most a temp file or an unreferenced archive that the next run removes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, StoreError
from .entry import HEX, Entry
from .files import alive, atomic_write, flocked, fsync_dir, hostname, key_hex, read_ahead

FORMAT = "v1"
CHUNK = 1 << 20
STALE_SECONDS = 24 * 3600
ZSTD_LEVEL = 3


class CorruptEntry(StoreError):
    """An archive does not match its record; it has been removed."""


class _HashingWriter:
    """A file-like sink that counts and hashes what passes through it."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def flush(self) -> None:
        self.fh.flush()


class _HashingReader:
    def __init__(self, fh: IO[bytes]) -> None:
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / FORMAT
        self._ready = False

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    # --- layout ---------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.base / name

    def archive_path(self, key: str) -> Path:
        return self._dir("objects") / f"{key_hex(key)}.tar.zst"

    def meta_path(self, key: str) -> Path:
        return self._dir("meta") / f"{key_hex(key)}.json"

    def ensure(self) -> None:
        """Create the layout and remove what killed writers left behind."""
        if self._ready:
            return
        try:
            for name in ("objects", "meta", "targets", "tmp", "locks", "passes"):
                self._dir(name).mkdir(parents=True, exist_ok=True)
            # O_EXCL | O_NOFOLLOW and a random name: a file or link planted in tmp/ is never written through
            probe = self._dir("tmp") / f".probe-{os.getpid()}-{os.urandom(6).hex()}"
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            probe.unlink()
        except OSError as exc:
            raise StoreError(
                f"store {self.root} is not writable ({exc.strerror}): pass --store DIR or fix its permissions"
            ) from None
        self._ready = True
        self.clean_leftovers()

    # --- locking --------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the key's lock. ``on_wait`` is called once if another process holds it."""
        self.ensure()
        with flocked(self._dir("locks") / f"{key_hex(key)}.lock", on_wait):
            yield

    def _try_lock(self, key: str) -> IO[bytes] | None:
        fh = open(self._dir("locks") / f"{key_hex(key)}.lock", "a+b")  # noqa: SIM115
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return fh

    # --- reading --------------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        path = self._dir("meta") / f"{key_hex(key)}.json"
        try:
            entry = Entry.from_record(json.loads(path.read_text()), key)
        except (OSError, ValueError):  # absent, or not a record to trust: see problems()
            return None
        with contextlib.suppress(OSError):  # a use is recorded as the record's mtime (see touch)
            entry = entry._replace(last_used=max(entry.last_used, path.stat().st_mtime))
        return entry

    def entries(self) -> list[Entry]:
        if not self._dir("meta").is_dir():
            return []
        out = []
        for path in self._dir("meta").glob("*.json"):
            entry = self.get("sha256:" + path.stem) if HEX.fullmatch(path.stem) else None
            if entry is not None:
                out.append(entry)
        return sorted(out, key=lambda e: e.last_used, reverse=True)

    @contextlib.contextmanager
    def open_archive(self, entry: Entry) -> Iterator[Iterator[bytes]]:
        """The decompressed ``docker save`` stream of an entry, checked as it is read.

        The iterator raises :class:`CorruptEntry` (after removing the entry) when the archive is
        truncated, damaged, or does not hash to its recorded digest.
        """
        path = self.archive_path(entry.key)
        try:
            fh = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            self.remove(entry.key)
            raise CorruptEntry(f"archive of {entry.key[:19]} is missing; entry removed") from None

        def chunks() -> Iterator[bytes]:
            import zstandard

            reader = _HashingReader(fh)
            try:
                with zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True) as stream:  # type: ignore[arg-type]
                    while chunk := stream.read(CHUNK):
                        yield chunk
            except zstandard.ZstdError as exc:
                self.remove(entry.key)
                raise CorruptEntry(f"archive of {entry.key[:19]} is damaged ({exc}); entry removed") from None
            if reader.size != entry.archive_bytes or reader.sha.hexdigest() != entry.archive_sha256:
                self.remove(entry.key)
                raise CorruptEntry(f"archive of {entry.key[:19]} does not match its digest; entry removed")

        try:
            yield read_ahead(chunks())
        finally:
            fh.close()

    def touch(self, entry: Entry) -> None:
        """Record a use, for least-recently-used pruning: the record's mtime (no rewrite, no lock)."""
        with contextlib.suppress(OSError):
            os.utime(self.meta_path(entry.key))

    # --- writing --------------------------------------------------------------------------------------
    def put(
        self,
        key: str,
        write_into: Callable[[Callable[[bytes], None]], int],
        *,
        target: str,
        repository: str,
        image_id: str,
        manifest_sha256: str,
        extra: dict[str, Any] | None = None,
    ) -> Entry:
        """Store an archive. ``write_into(sink)`` feeds the ``docker save`` bytes to ``sink`` and
        returns their count. The caller holds the key's lock."""
        import zstandard

        self.ensure()
        tmp_path = self.temp_path(key, "zst")
        try:
            with open(tmp_path, "xb") as fh:
                sink = _HashingWriter(fh)
                compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
                with compressor.stream_writer(sink, closefd=False) as zw:  # type: ignore[arg-type]
                    image_bytes = write_into(zw.write)  # type: ignore[arg-type]
                fh.flush()
                os.fsync(fh.fileno())
            # An old record must never vouch for the new archive, not even for a moment (--rebuild).
            self.meta_path(key).unlink(missing_ok=True)
            os.replace(tmp_path, self.archive_path(key))
            fsync_dir(self._dir("objects"))
            now = time.time()
            entry = Entry(
                key=key,
                target=target,
                repository=repository,
                image_id=image_id,
                archive_sha256=sink.sha.hexdigest(),
                archive_bytes=sink.size,
                image_bytes=image_bytes,
                manifest_sha256=manifest_sha256,
                created=now,
                last_used=now,
                extra=dict(extra or {}),
            )
            atomic_write(self.meta_path(key), json.dumps(entry._asdict(), indent=1).encode())
            return entry
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            if not self.meta_path(key).exists():
                with contextlib.suppress(OSError):
                    self.archive_path(key).unlink()
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise StoreError(
                f"could not save into store {self.root}: {reason}; the store is unchanged"
            ) from None
        except BaseException:
            with contextlib.suppress(OSError):
                tmp_path.unlink()
            raise

    def temp_path(self, key: str, label: str) -> Path:
        """A fresh temp file name in the store, recognisable as this process's if it is left behind."""
        self.ensure()
        name = f"{key_hex(key)}~{hostname()}~{os.getpid()}~{os.urandom(4).hex()}~{label}.partial"
        return self._dir("tmp") / name

    def remove(self, key: str) -> None:
        """Remove an entry: its record first (so nobody trusts the archive), then the archive."""
        for path in (self.meta_path(key), self.archive_path(key)):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- housekeeping -----------------------------------------------------------------------------------
    def clean_leftovers(self) -> list[Path]:
        """Remove temp files of dead writers and archives that no record points to."""
        removed: list[Path] = []
        host = hostname()
        now = time.time()
        for path in self._dir("tmp").glob("*.partial"):
            parts = path.name.split("~")
            try:
                mine, pid = parts[1] == host, int(parts[2])
                age = now - path.stat().st_mtime
            except (IndexError, ValueError, OSError):
                continue
            if (mine and not alive(pid)) or age > STALE_SECONDS:
                with contextlib.suppress(OSError):
                    path.unlink()
                    removed.append(path)
        for path in self._dir("objects").glob("*.tar.zst"):
            hexpart = path.name.split(".")[0]
            if not HEX.fullmatch(hexpart):
                continue  # not ours to remove unasked: problems() reports it, repair() removes it
            if not (self._dir("meta") / f"{hexpart}.json").exists():
                held = self._try_lock("sha256:" + hexpart)
                if held is None:
                    continue  # its writer is still at work
                try:
                    if not (self._dir("meta") / f"{hexpart}.json").exists():
                        path.unlink(missing_ok=True)
                        removed.append(path)
                finally:
                    held.close()
        return removed

    def verify(self) -> list[tuple[Entry, str]]:
        """Check every archive against its record; damaged entries are removed and reported."""
        problems: list[tuple[Entry, str]] = []
        for entry in self.entries():
            path = self.archive_path(entry.key)
            try:
                with open(path, "rb") as fh:
                    reader = _HashingReader(fh)
                    while reader.read(CHUNK):
                        pass
                if reader.size != entry.archive_bytes or reader.sha.hexdigest() != entry.archive_sha256:
                    problems.append((entry, "archive does not match its recorded digest"))
                    self.remove(entry.key)
            except FileNotFoundError:
                problems.append((entry, "archive is missing"))
                self.remove(entry.key)
        return problems

    def problems(self) -> list[tuple[Path, str]]:
        """Files in ``objects/`` and ``meta/`` that are not a valid entry's: stray files and records
        that do not check (:meth:`Entry.from_record`). Every reader skips them; :meth:`repair` removes
        them."""
        found: list[tuple[Path, str]] = []
        for path in self._listed("objects"):
            if not (path.name.endswith(".tar.zst") and HEX.fullmatch(path.name.split(".")[0])):
                found.append((path, "not an archive of this store (a stray file)"))
        for path in self._listed("meta"):
            if not (path.suffix == ".json" and HEX.fullmatch(path.stem)):
                found.append((path, "not a record of this store (a stray file)"))
                continue
            try:
                Entry.from_record(json.loads(path.read_text()), "sha256:" + path.stem)
            except (OSError, ValueError) as exc:
                found.append((path, f"a record that does not check: {exc}"))
        return found

    def _listed(self, name: str) -> list[Path]:
        """The files of ``objects/`` or ``meta/``, less another process's work in progress: a hidden
        file (the atomic writer's ``.<name>.<random>.tmp``) is left alone until it is a day old."""
        folder = self._dir(name)
        if not folder.is_dir():
            return []
        now = time.time()
        out = []
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                with contextlib.suppress(OSError):
                    if now - path.lstat().st_mtime <= STALE_SECONDS:
                        continue
            out.append(path)
        return out

    def repair(self) -> list[tuple[Path, str]]:
        """Remove what :meth:`problems` reports, with the archive of each bad record."""
        found = self.problems()
        for path, _ in found:
            if path.parent.name == "meta" and HEX.fullmatch(path.stem):
                held = self._try_lock("sha256:" + path.stem)
                if held is None:
                    continue  # its writer is at work: the record may be what it is about to replace
                try:
                    self.remove("sha256:" + path.stem)  # the record first, then its archive
                finally:
                    held.close()
            else:
                with contextlib.suppress(OSError):
                    if path.is_dir() and not path.is_symlink():
                        import shutil  # a stray directory: rare

                        shutil.rmtree(path)
                    else:
                        path.unlink()
        return found

    def prune(
        self,
        *,
        max_size: int | None = None,
        keep: int | None = None,
        older_than: float | None = None,
        dry_run: bool = False,
    ) -> list[Entry]:
        """Remove least recently used entries until every given limit holds; a real prune also removes
        what :meth:`problems` reports. Limits must be positive (a count of 0 or a negative size would
        empty a store shared with other projects)."""
        if max_size is not None and (isinstance(max_size, bool) or max_size <= 0):
            raise ConfigError(f"a store's size limit must be a positive number of bytes, not {max_size!r}")
        if keep is not None and (isinstance(keep, bool) or keep < 1):
            raise ConfigError(f"keep at least 1 entry, not {keep!r}")
        if older_than is not None and older_than <= 0:
            raise ConfigError(f"an age must be positive, not {older_than!r}")
        if not dry_run:
            self.repair()
        entries = self.entries()  # most recently used first
        doomed: list[Entry] = []
        now = time.time()
        total = 0
        for rank, entry in enumerate(entries):
            too_old = older_than is not None and now - entry.last_used > older_than
            too_many = keep is not None and rank >= keep
            too_big = max_size is not None and total + entry.archive_bytes > max_size
            if too_old or too_many or too_big:
                doomed.append(entry)
            else:
                total += entry.archive_bytes
        if not dry_run:
            for entry in doomed:
                held = self._try_lock(entry.key)
                if held is None:
                    continue
                try:
                    self.remove(entry.key)
                finally:
                    held.close()
        return doomed
