"""The local directory store: an OCI image layout whose blobs every entry shares.

Layout under the store root (``v2/``; ``v1/`` keeps the records of ``records.py`` and the redaction
key, whose format did not change)::

    v2/oci-layout            {"imageLayoutVersion": "1.0.0"}
    v2/index.json            one descriptor per entry (its OCI image manifest), for OCI tools;
                             made again from meta/ after every change, never read by stagecache
    v2/blobs/sha256/<hex>    layers (zstd when saved uncompressed), configs, manifests: each once
    v2/diffs/<hex>           link to the compressed blob of the layer whose uncompressed digest is <hex>
    v2/meta/<hex>.json       the record of one entry, with its load plan; written last: the commit point
    v2/tmp/                  blobs being written; named so that leftovers can be recognised
    v2/locks/<hex>.lock      one flock per key: one builder or writer at a time
    v2/locks/blobs.lock      shared by every save, exclusive for the sweep of unused blobs

A save writes its blobs (each to ``tmp/``, fsynced, renamed to its digest), then the entry's OCI
manifest, then the record. A reader trusts only what a record names, and checks every blob's digest
as it streams it. A process killed at any point leaves the store as it was, plus at most temp files
and blobs no record uses, which the next prune sweeps (never while a save is under way).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import ConfigError, StoreError
from .blobs import BadBlob, Blobs
from .entry import HEX, Entry
from .files import alive, atomic_write, flocked, hostname, key_hex

if TYPE_CHECKING:  # plan.py imports tarfile: only a save or a load needs it, never a warm hit
    from .plan import Image, Member

FORMAT = "v2"
RECORDS = "v1"  # the records and the redaction key: their format did not change
STALE_SECONDS = 24 * 3600
MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar"


class CorruptEntry(StoreError):
    """An entry whose blobs do not match its record; it has been removed."""


class DirectoryStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.base = root / FORMAT
        self.records_dir = root / RECORDS
        self.blobs = Blobs(self.base, self.base / "tmp")
        self._ready = False

    def __repr__(self) -> str:
        return f"DirectoryStore({str(self.root)!r})"

    # --- layout ---------------------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.base / name

    def meta_path(self, key: str) -> Path:
        return self._dir("meta") / f"{key_hex(key)}.json"

    def ensure(self) -> None:
        """Create the layout and remove what killed writers left behind."""
        if self._ready:
            return
        try:
            for name in ("meta", "tmp", "locks"):
                self._dir(name).mkdir(parents=True, exist_ok=True)
            self.blobs.ensure()
            if not (self.base / "oci-layout").exists():
                atomic_write(self.base / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
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

    def try_lock(self, key: str) -> IO[bytes] | None:
        """The key's lock if it is free now (closing the file releases it), else None."""
        self.ensure()
        return self._try_lock(key_hex(key))

    def _try_lock(self, name: str, shared: bool = False) -> IO[bytes] | None:
        fh = open(self._dir("locks") / f"{name}.lock", "a+b")  # noqa: SIM115
        try:
            fcntl.flock(fh, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return None
        return fh

    @contextlib.contextmanager
    def _saving(self) -> Iterator[None]:
        """Held (shared) by a save from its first blob to its record: the sweep waits for none."""
        with open(self._dir("locks") / "blobs.lock", "a+b") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH)
            yield

    # --- reading --------------------------------------------------------------------------------------
    def get(self, key: str) -> Entry | None:
        path = self._dir("meta") / f"{key_hex(key)}.json"
        try:
            entry = Entry.from_record(json.loads(path.read_text()), key)
        except (OSError, ValueError, TypeError):  # absent, or not a record to trust: see problems()
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

    def load_stream(self, entry: Entry, present: Sequence[Sequence[str]] = ()) -> Iterator[bytes]:
        """The tar ``docker load`` reads for an entry, made from its blobs as it is read (``present``:
        diff IDs of images the daemon has, whose layers need not be sent). Raises
        :class:`CorruptEntry` (the entry removed) when a blob is missing or damaged."""
        from .plan import Member, load_stream

        members = [Member(str(n), str(d), int(s), bool(c)) for n, d, s, c in entry.members]
        try:
            yield from load_stream(members, self.blobs, present)
        except BadBlob as exc:
            self.remove(entry.key)
            raise CorruptEntry(f"{exc}; entry {entry.key[:19]} removed") from None

    def total_bytes(self, entries: Sequence[Entry] | None = None) -> int:
        """Bytes of the blobs the entries use, each blob counted once."""
        used: set[str] = set()
        for entry in self.entries() if entries is None else entries:
            used |= entry.blobs()
        return sum(self.blobs.size(d) for d in used)

    def touch(self, entry: Entry) -> None:
        """Record a use, for least-recently-used pruning: the record's mtime (no rewrite, no lock)."""
        with contextlib.suppress(OSError):
            os.utime(self.meta_path(entry.key))

    # --- writing --------------------------------------------------------------------------------------
    def put_images(
        self,
        stream: IO[bytes],
        wanted: Sequence[dict[str, Any]],
        bases: Sequence[Sequence[Sequence[str]]],
        cancelled: Callable[[], bool] = lambda: False,
    ) -> list[Entry]:
        """Keep the images of a ``docker save`` tar read from ``stream``: one entry per item of
        ``wanted`` (``key``, ``ref``, ``target``, ``repository``, ``image_id``, ``manifest_sha256``),
        ``bases[i]`` the diff IDs of its base images. The caller holds every key's lock. When
        ``cancelled()`` turns true the save stops before its next blob and writes no record."""
        import tarfile

        from .plan import Cancelled, save_into

        self.ensure()
        temp = self.temp_path(wanted[0]["key"], "blob")
        try:
            with self._saving():
                images = save_into(stream, [w["ref"] for w in wanted], self.blobs, bases, temp, cancelled)
                if cancelled():
                    raise Cancelled
                entries = [self._commit(w, image) for w, image in zip(wanted, images, strict=True)]
        except (tarfile.TarError, EOFError) as exc:  # a save cut short: no record was written
            raise StoreError(
                f"could not save into store {self.root}: {exc}; the store is unchanged"
            ) from None
        except OSError as exc:
            reason = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
            raise StoreError(
                f"could not save into store {self.root}: {reason}; the store is unchanged"
            ) from None
        self.write_index()
        if any(image.unused for image in images):
            self.sweep()  # what the save wrote that no image uses (containerd's base layers)
        return entries

    def _commit(self, wanted: dict[str, Any], image: Image) -> Entry:
        key = wanted["key"]
        layers = []
        for blob, size, diff_id in image.layers:
            if blob is None:  # a base image's layer: listed, not kept (every daemon with the key has it)
                layers.append({"mediaType": LAYER, "digest": diff_id, "size": size,
                               "annotations": {"org.stagecache.kept": "false"}})  # fmt: skip
            else:
                media = LAYER + ("+zstd" if blob.compressed else "")
                layers.append({"mediaType": media, "digest": blob.digest, "size": blob.size})
        config = {"mediaType": "application/vnd.oci.image.config.v1+json",
                  "digest": image.config.digest, "size": image.config.size}  # fmt: skip
        names = {"org.stagecache.key": key, "org.stagecache.target": wanted["target"]}
        doc = {
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "config": config,
            "layers": layers,
            "annotations": names,
        }
        manifest = self.blobs.put_bytes(
            json.dumps(doc, sort_keys=True).encode(), self.temp_path(key, "manifest")
        )
        members = image.members
        now = time.time()
        entry = Entry(
            key=key,
            target=wanted["target"],
            repository=wanted["repository"],
            image_id=wanted["image_id"],
            manifest_digest=manifest.digest,
            stored_bytes=0,
            new_bytes=image.new_bytes + (manifest.size if manifest.new else 0),
            image_bytes=sum(_tar_bytes(m) for m in members) + 1024,
            manifest_sha256=wanted["manifest_sha256"],
            created=now,
            last_used=now,
            members=[m.as_record() for m in members],
            extra=dict(wanted.get("extra") or {}),
        )
        entry = entry._replace(stored_bytes=sum(self.blobs.size(d) for d in entry.blobs()))
        atomic_write(self.meta_path(key), json.dumps(entry._asdict(), indent=1).encode())
        return entry

    def write_index(self) -> None:
        """``index.json``: the entries' manifests, for OCI tools (``skopeo``, ``oras``, registries)."""
        manifests = []
        for entry in sorted(self.entries(), key=lambda e: e.key):
            manifests.append({
                "mediaType": MANIFEST, "digest": entry.manifest_digest,
                "size": self.blobs.size(entry.manifest_digest),
                "annotations": {"org.opencontainers.image.ref.name": entry.key.removeprefix("sha256:"),
                                "org.stagecache.target": entry.target},
            })  # fmt: skip
        doc = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": manifests,
        }
        with flocked(self._dir("locks") / "index.lock"):
            atomic_write(self.base / "index.json", json.dumps(doc, indent=1).encode())

    def temp_path(self, key: str, label: str) -> Path:
        """A fresh temp file name in the store, recognisable as this process's if it is left behind."""
        self.ensure()
        name = f"{key_hex(key)}~{hostname()}~{os.getpid()}~{os.urandom(4).hex()}~{label}.partial"
        return self._dir("tmp") / name

    def remove(self, key: str) -> None:
        """Remove an entry's record; its blobs go with the next sweep, if no other entry uses them."""
        with contextlib.suppress(FileNotFoundError):
            self.meta_path(key).unlink()

    # --- housekeeping -----------------------------------------------------------------------------------
    def clean_leftovers(self) -> list[Path]:
        """Remove temp files of dead writers (same host, PID gone) or older than a day."""
        removed: list[Path] = []
        host = hostname()
        now = time.time()
        for path in self._dir("tmp").glob("*.partial*"):
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
        return removed

    def sweep(self, dry_run: bool = False) -> tuple[int, int]:
        """Remove the blobs no entry uses (pruned entries', a killed save's); skipped while a save is
        under way (it may be writing blobs whose record does not exist yet). (blobs, bytes) removed."""
        if not self._dir("locks").is_dir():
            return 0, 0
        held = self._try_lock("blobs")
        if held is None:
            return 0, 0
        try:
            used: set[str] = set()
            for entry in self.entries():
                used |= entry.blobs()
            count = size = 0
            for digest in self.blobs.all():
                if digest not in used:
                    count += 1
                    size += self.blobs.size(digest)
                    if not dry_run:
                        self.blobs.remove(digest)
            if not dry_run:
                self.blobs.remove_dangling_links()
            return count, size
        finally:
            held.close()

    def verify(self) -> list[tuple[Entry, str]]:
        """Check every blob each entry uses against its digest; entries with a missing or damaged
        blob are removed (and the damaged blob) and reported."""
        problems: list[tuple[Entry, str]] = []
        checked: dict[str, str] = {}  # digest -> "" (sound), "missing" or "damaged", found once
        for entry in self.entries():
            for digest in sorted(entry.blobs()):
                if digest not in checked:
                    gone = not self.blobs.path(digest).exists()
                    checked[digest] = "" if self.blobs.check(digest) else "missing" if gone else "damaged"
                if checked[digest]:  # every entry that uses it is told why, not "missing" once removed
                    problems.append((entry, f"blob {digest[:19]} is {checked[digest]}"))
                    self.blobs.remove(digest)
                    self.remove(entry.key)
                    break
        if problems:
            self.write_index()
        return problems

    def problems(self) -> list[tuple[Path, str]]:
        """Files in ``meta/`` and ``blobs/`` that are not a valid entry's or blob: stray files and
        records that do not check (:meth:`Entry.from_record`). Every reader skips them; :meth:`repair`
        removes them."""
        found: list[tuple[Path, str]] = []
        for path in self._listed(self.blobs.dir):
            if not HEX.fullmatch(path.name) or not path.is_file():
                found.append((path, "not a blob of this store (a stray file)"))
        for path in self._listed(self._dir("meta")):
            if not (path.suffix == ".json" and HEX.fullmatch(path.stem)):
                found.append((path, "not a record of this store (a stray file)"))
                continue
            try:
                Entry.from_record(json.loads(path.read_text()), "sha256:" + path.stem)
            except (OSError, ValueError, TypeError) as exc:
                found.append((path, f"a record that does not check: {exc}"))
        return found

    def _listed(self, folder: Path) -> list[Path]:
        """The files of a folder, less another process's work in progress: a hidden file (the atomic
        writer's ``.<name>.<random>.tmp``) is left alone until it is a day old."""
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
        """Remove what :meth:`problems` reports (a bad record under its key's lock)."""
        found = self.problems()
        for path, _ in found:
            if path.parent.name == "meta" and HEX.fullmatch(path.stem):
                held = self._try_lock(path.stem)
                if held is None:
                    continue  # its writer is at work: the record may be what it is about to replace
                try:
                    self.remove("sha256:" + path.stem)
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
        """Remove least recently used entries until every given limit holds, then the blobs no
        remaining entry uses. ``max_size`` counts each blob once, however many entries share it. A
        real prune also removes what :meth:`problems` reports. Limits must be positive (a count of 0
        or a negative size would empty a store shared with other projects)."""
        if max_size is not None and (isinstance(max_size, bool) or max_size <= 0):
            raise ConfigError(f"a store's size limit must be a positive number of bytes, not {max_size!r}")
        if keep is not None and (isinstance(keep, bool) or keep < 1):
            raise ConfigError(f"keep at least 1 entry, not {keep!r}")
        if older_than is not None and older_than <= 0:
            raise ConfigError(f"an age must be positive, not {older_than!r}")
        if not dry_run:
            self.repair()
        doomed: list[Entry] = []
        now = time.time()
        kept: set[str] = set()
        total = 0
        for rank, entry in enumerate(self.entries()):  # most recently used first
            extra = {d for d in entry.blobs() if d not in kept}
            grown = total + sum(self.blobs.size(d) for d in extra)
            too_old = older_than is not None and now - entry.last_used > older_than
            too_many = keep is not None and rank >= keep
            too_big = max_size is not None and grown > max_size
            if too_old or too_many or too_big:
                doomed.append(entry)
            else:
                kept |= extra
                total = grown
        if not dry_run:
            for entry in doomed:
                held = self._try_lock(entry.hex)
                if held is None:
                    continue
                try:
                    self.remove(entry.key)
                finally:
                    held.close()
            self.sweep()
            if doomed:
                self.write_index()
        return doomed


def _tar_bytes(member: Member) -> int:
    """The bytes one member takes in the tar a load streams: its header, its data padded to a block."""
    inline = member.digest.startswith("inline:")
    size = len(member.digest.removeprefix("inline:").encode()) if inline else member.size
    return 512 + -(-size // 512) * 512
