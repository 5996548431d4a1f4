"""Content-addressed blobs: the ``blobs/sha256/`` of the store's OCI image layout.

A blob's file name is the sha256 of its bytes, as OCI requires, so one layer is kept once whatever
number of images (prod and dev, stages and targets, one commit and the next) use it. A layer that
``docker save`` gives uncompressed is kept compressed (zstd, a ``tar+zstd`` OCI layer); the link
``diffs/<hex of the uncompressed bytes>`` names its blob, so that the next save of the same layer
is recognised by its uncompressed digest and not written again.

Writes are atomic: a blob is written to ``tmp/``, fsynced, and renamed into place under its digest,
which is only known at the end; a blob that is already there is not replaced. Reads are checked: the
bytes read must hash to the name, or :class:`BadBlob` is raised and the blob removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Container, Iterator
from pathlib import Path
from typing import IO, NamedTuple, Protocol

from .files import fsync_dir

CHUNK = 1 << 20
ZSTD_LEVEL = 3
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
COMPRESS_FROM = 64 << 10  # smaller files that are not a tar (configs, manifests) are kept as they are


def worth_compressing(head: bytes, size: int) -> bool:
    """Whether a file goes into the store zstd-compressed: an uncompressed layer (a tar, whatever its
    size: a one-line edit's layer is a few kB of tar headers and padding), or anything big that is
    not compressed already. Configs and manifests stay as they are: OCI tools read them."""
    if head.startswith((ZSTD_MAGIC, GZIP_MAGIC)) or head.lstrip()[:1] in (b"{", b"["):
        return False  # compressed already, or JSON (a config with a long history can pass 64 kB)
    return size >= COMPRESS_FROM or head[257:262] == b"ustar"


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class BadBlob(Exception):
    """A blob that is missing or does not hash to its name (it has been removed)."""


class Stored(NamedTuple):
    """One blob in the store, and what it holds."""

    digest: str  # sha256:<hex> of the stored bytes (the blob's name)
    size: int  # bytes stored
    content: str  # sha256:<hex> of the bytes it gives back (== digest unless compressed)
    content_size: int
    compressed: bool  # zstd-compressed by the store
    new: bool  # written by this save (not there before)


class Blobs:
    """The blobs of one store: ``<root>/blobs/sha256/<hex>`` and ``<root>/diffs/<hex>``."""

    def __init__(self, root: Path, tmp: Path) -> None:
        self.dir = root / "blobs" / "sha256"
        self.diffs = root / "diffs"
        self.tmp = tmp

    def ensure(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.diffs.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.dir / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path(digest).stat().st_size
        except OSError:
            return 0

    def known(self, content: str) -> Stored | None:
        """The blob that gives back ``content`` (an uncompressed digest), if the store has one."""
        hexpart = content.removeprefix("sha256:")
        if self.has(content):
            size = self.size(content)
            return Stored(content, size, content, size, False, False)
        try:
            target = os.readlink(self.diffs / hexpart)
        except OSError:
            return None
        stored = "sha256:" + os.path.basename(target)
        if not self.has(stored):
            return None
        return Stored(stored, self.size(stored), content, -1, True, False)

    def all(self) -> list[str]:
        if not self.dir.is_dir():
            return []
        return ["sha256:" + p.name for p in self.dir.iterdir() if len(p.name) == 64 and p.is_file()]

    def remove(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()

    def remove_dangling_links(self) -> None:
        """``diffs/`` links whose blob is gone (pruned)."""
        if not self.diffs.is_dir():
            return
        for link in self.diffs.iterdir():
            if link.name.startswith("."):
                continue  # another process's link on its way into place
            if not link.is_symlink() or not self.path(os.path.basename(os.readlink(link))).is_file():
                with contextlib.suppress(OSError):
                    link.unlink()

    # --- writing --------------------------------------------------------------------------------------
    def write(self, source: Readable, size: int, temp: Path) -> Stored:
        """Copy ``size`` bytes of ``source`` into a blob (compressed when it is a big uncompressed
        file), and return it; an identical blob already stored is kept and the copy dropped."""
        head = source.read(min(size, CHUNK))
        compress = worth_compressing(head, size)
        try:
            with open(temp, "xb") as fh:
                blob = self._copy(head, source, size, fh, compress)
            return self._commit(temp, blob)
        finally:
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()

    def write_unless(
        self, source: IO[bytes], size: int, temp: Path, unwanted: Container[str]
    ) -> Stored | None:
        """:meth:`write` for a file whose digest is only known once read (a 20.10 ``layer.tar``): it
        is copied as it is first, and compressed only when its digest is neither ``unwanted`` (a base
        image's layer: None) nor a blob the store has; a base layer then costs no compression."""
        head = source.read(min(size, CHUNK))
        if not worth_compressing(head, size):
            with contextlib.suppress(FileNotFoundError):
                temp.unlink()
            return self.write(_Prefixed(head, source), size, temp)
        raw = temp.with_name(temp.name + ".raw")
        try:
            with open(raw, "xb") as fh:
                first = self._copy(head, source, size, fh, False)
            if first.content in unwanted:
                return None
            if (known := self.known(first.content)) is not None:
                return known._replace(content_size=size)
            with open(raw, "rb") as fh:
                return self.write(fh, size, temp)
        finally:
            with contextlib.suppress(FileNotFoundError):
                raw.unlink()

    def _copy(self, head: bytes, source: Readable, size: int, fh: IO[bytes], compress: bool) -> Stored:
        """Copy ``head`` and the rest of ``size`` bytes from ``source`` into ``fh`` (through zstd when
        ``compress``), hashing what is read and what is written; fsynced."""
        import zstandard

        content = hashlib.sha256()
        stored = hashlib.sha256()
        written = 0

        class Sink:
            def write(self, data: bytes) -> int:
                nonlocal written
                stored.update(data)
                written += len(data)
                return fh.write(data)

        compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1, write_checksum=True)
        out = compressor.stream_writer(Sink(), closefd=False) if compress else Sink()  # type: ignore[arg-type]
        left = size
        data = head
        while True:
            content.update(data)
            out.write(data)
            left -= len(data)
            if left <= 0:
                break
            data = source.read(min(left, CHUNK))
            if not data:
                raise EOFError(f"the image stream ended {left} bytes early")
        if compress:
            out.close()  # type: ignore[union-attr]
        fh.flush()
        os.fsync(fh.fileno())
        return Stored(
            "sha256:" + stored.hexdigest(), written, "sha256:" + content.hexdigest(), size, compress, True
        )

    def put_bytes(self, data: bytes, temp: Path) -> Stored:
        import io

        return self.write(io.BytesIO(data), len(data), temp)

    def _commit(self, temp: Path, blob: Stored) -> Stored:
        """Rename the written temp file into place, unless a blob of the same content is there."""
        already = self.known(blob.content)
        if already is not None:
            return already._replace(content_size=blob.content_size)
        final = self.path(blob.digest)
        if final.is_file():
            return blob._replace(new=False)
        os.replace(temp, final)
        fsync_dir(self.dir)
        if blob.compressed:
            link = self.diffs / blob.content.removeprefix("sha256:")
            tmp_link = self.diffs / f".{link.name}.{os.getpid()}.{os.urandom(4).hex()}"
            os.symlink(os.path.join("..", "blobs", "sha256", final.name), tmp_link)
            os.replace(tmp_link, link)
        return blob

    # --- reading --------------------------------------------------------------------------------------
    def read(self, digest: str, *, compressed: bool) -> Iterator[bytes]:
        """The bytes a blob gives back (decompressed if the store compressed it), checked against its
        name as they are read; :class:`BadBlob` (and the blob removed) when they do not match."""
        path = self.path(digest)
        try:
            fh = open(path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            raise BadBlob(f"blob {digest[:19]} is missing") from None
        with fh:
            sha = hashlib.sha256()

            def raw() -> Iterator[bytes]:
                while chunk := fh.read(CHUNK):
                    sha.update(chunk)
                    yield chunk

            if compressed:
                import zstandard

                reader = _IterReader(raw())
                try:
                    with zstandard.ZstdDecompressor().stream_reader(reader, read_across_frames=True) as z:  # type: ignore[arg-type]
                        while chunk := z.read(CHUNK):
                            yield chunk
                except zstandard.ZstdError as exc:
                    self.remove(digest)
                    raise BadBlob(f"blob {digest[:19]} is damaged ({exc}); removed") from None
            else:
                yield from raw()
            if "sha256:" + sha.hexdigest() != digest:
                self.remove(digest)
                raise BadBlob(f"blob {digest[:19]} does not match its digest; removed")

    def check(self, digest: str) -> bool:
        """Whether a blob's bytes hash to its name (``store verify``)."""
        sha = hashlib.sha256()
        try:
            with open(self.path(digest), "rb") as fh:
                while chunk := fh.read(CHUNK):
                    sha.update(chunk)
        except OSError:
            return False
        return "sha256:" + sha.hexdigest() == digest


class _Prefixed:
    """A file object that gives ``head`` first, then the rest of ``source``."""

    def __init__(self, head: bytes, source: Readable) -> None:
        self.head = head
        self.source = source

    def read(self, n: int = -1, /) -> bytes:
        if self.head:
            data, self.head = (
                (self.head, b"") if n < 0 or n >= len(self.head) else (self.head[:n], self.head[n:])
            )
            return data
        return self.source.read(n)


class _IterReader:
    """A ``read(n)`` file object over an iterator of chunks (for zstandard's stream reader)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks = chunks
        self.buffer = b""

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self.buffer) < n) and (chunk := next(self.chunks, None)) is not None:
            self.buffer += chunk
        if n < 0:
            data, self.buffer = self.buffer, b""
        else:
            data, self.buffer = self.buffer[:n], self.buffer[n:]
        return data
