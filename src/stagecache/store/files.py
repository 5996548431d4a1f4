"""File helpers the store's parts share: the one atomic writer, flock, key names on disk, live PIDs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import StoreError

UMASK = os.umask(0o022)
os.umask(UMASK)


def key_hex(key: str) -> str:
    hexpart = key.removeprefix("sha256:")
    if not re.fullmatch(r"[0-9a-f]{64}", hexpart):
        raise StoreError(f"not a key: {key!r}")
    return hexpart


@contextlib.contextmanager
def flocked(path: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if absent). ``on_wait``: called once if busy."""
    with open(path, "a+b") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait is not None:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def hostname() -> str:
    """This machine's name, as ``socket.gethostname()`` gives it (without that module's imports)."""
    return os.uname().nodename


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    import tempfile  # imported here: a hit writes nothing

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~UMASK)  # mkstemp makes 0600; a shared CI cache dir wants the usual mode
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_ahead(chunks: Iterator[bytes], depth: int = 8) -> Iterator[bytes]:
    """Run ``chunks`` in a thread of its own, a few chunks ahead of the consumer.

    Decompressing and hashing (which release the GIL) then overlap with the consumer's writes into
    ``docker load``, instead of taking turns with them.
    """

    def produce(put: Callable[[bytes], None]) -> None:
        for chunk in chunks:
            put(chunk)

    return threaded(produce, "stagecache-read-ahead", depth)


class Abandoned(Exception):
    """Raised in a :func:`threaded` producer whose consumer has stopped reading."""


def threaded(
    produce: Callable[[Callable[[bytes], None]], None], name: str, depth: int = 8
) -> Iterator[bytes]:
    """The chunks ``produce(put)`` puts, made in a thread of its own at most ``depth`` chunks ahead.

    An exception in the producer is raised to the consumer; a consumer that stops reading makes the
    next ``put`` raise :class:`Abandoned` in the producer, which then ends.
    """
    import queue
    import threading

    done = object()
    buffer: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(chunk: bytes) -> None:
        if stop.is_set():
            raise Abandoned
        buffer.put(chunk)

    def work() -> None:
        try:
            produce(put)
            buffer.put(done)
        except Abandoned:
            return
        except BaseException as exc:  # handed to the consumer, raised there  # noqa: BLE001
            buffer.put(exc)

    worker = threading.Thread(target=work, name=name, daemon=True)
    worker.start()
    try:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, bytes)
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full buffer
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(0.01)
