"""The context watcher's process: started as ``python -m stagecache.speed.watcherd ROOT SOCKET``, it
detaches, takes ``SOCKET.lock``, watches ROOT (:class:`~stagecache.speed.watcher.Watcher`) and answers
on SOCKET, one request a connection: ``since TOKEN``, ``status`` or ``stop``, each answered with one
JSON object. See :mod:`stagecache.speed.watcher` for what it reports and when it exits.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator

from .watcher import IDLE_S, REQUEST_TIMEOUT_S, CannotWatch, Watcher


def serve(root: str, socket_path: str, idle: float, ready: Callable[[], None] = lambda: None) -> int:
    """Watch ``root`` and answer on ``socket_path`` until told to stop; 0 also when another watcher runs.

    ``ready`` is called once clients can ask.
    """
    lock = _lock(socket_path + ".lock")
    if lock is None:
        ready()
        return 0  # another watcher has this root
    try:
        watcher = Watcher(os.path.realpath(root))
    except CannotWatch as exc:
        print(f"stagecache watcher: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)  # a watcher that died left it
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        server.bind(socket_path)
    finally:
        os.umask(old_umask)
    bound = os.stat(socket_path).st_ino
    server.listen(16)
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    # A signal writes to this pipe, so that it wakes the poll below (Python would resume the poll).
    wake_read, wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller = select.poll()
    poller.register(server.fileno(), select.POLLIN)
    poller.register(wake_read, select.POLLIN)
    ready()
    last_query = time.monotonic()
    try:
        while not stopping and watcher.alive:
            fd = watcher.inotify.fileno()
            with _registered(poller, fd):
                readable = {f for f, _ in poller.poll(60_000)}
            if wake_read in readable:
                with contextlib.suppress(OSError):
                    os.read(wake_read, 512)
            if fd in readable:
                watcher.drain()
            if server.fileno() in readable and not stopping:
                last_query = time.monotonic()
                stopping = _answer(server, watcher) or stopping
            if time.monotonic() - last_query > idle or not _ours(socket_path, bound):
                break  # idle, or nobody can reach it any more (its directory was removed)
    except CannotWatch as exc:
        print(f"stagecache watcher: {exc}", file=sys.stderr)
        return 1
    finally:
        if _ours(socket_path, bound):  # not a newer watcher's socket
            with contextlib.suppress(OSError):
                os.unlink(socket_path)
        server.close()
        watcher.close()
    return 0


def _ours(socket_path: str, bound: int) -> bool:
    try:
        return os.stat(socket_path).st_ino == bound
    except OSError:
        return False


def _lock(path: str) -> int | None:
    """The watcher's lock, held until the process ends; None while another process holds it.

    A lock file removed and made again (its directory deleted, say) while locked would let a second
    watcher lock the new file: the lock only counts when the file locked is still the one at ``path``.
    """
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        mine = os.fstat(fd)
        try:
            there = os.stat(path)
        except FileNotFoundError:
            there = None
        if there is not None and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # removed or replaced while we locked it: try again
    return None


@contextlib.contextmanager
def _registered(poller: select.poll, fd: int) -> Iterator[None]:
    """The inotify descriptor changes after an overflow: poll the current one."""
    poller.register(fd, select.POLLIN)
    try:
        yield
    finally:
        poller.unregister(fd)


def _answer(server: socket.socket, watcher: Watcher) -> bool:
    """Answer one client; True when it asked the watcher to stop."""
    try:
        conn, _ = server.accept()
    except OSError:
        return False
    with conn:
        line = _request_line(conn)
        if line is None:
            return False
        verb, _, arg = line.partition(" ")
        try:
            if verb == "since":
                answer = watcher.since(arg)
            elif verb == "status":
                answer = watcher.status()
            elif verb == "stop":
                answer = {"stopping": True}
            else:
                answer = {"error": f"unknown request {verb!r}"}
        except CannotWatch:
            raise
        except Exception:  # noqa: BLE001 -- one bad request must not end the watcher
            traceback.print_exc()
            answer = {"error": f"the watcher failed on {line[:80]!r}; see its log"}
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")
        return verb == "stop"


def _request_line(conn: socket.socket) -> str | None:
    """The request's line, read within ``REQUEST_TIMEOUT_S`` in all; None if it does not come."""
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    data = b""
    while b"\n" not in data and len(data) < 65536:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            conn.settimeout(left)
            chunk = conn.recv(4096)
        except OSError:
            return None
        if not chunk:
            break
        data += chunk
    return data.partition(b"\n")[0].decode("utf-8", "surrogateescape").strip()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m stagecache.speed.watcherd", description=__doc__.splitlines()[0]
    )
    parser.add_argument("root", help="the directory to watch")
    parser.add_argument("socket", help="the Unix socket to answer on")
    parser.add_argument("--idle", type=float, default=IDLE_S, help="exit after this many seconds unasked")
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    args = parser.parse_args(argv)
    args.root = os.path.realpath(args.root)
    args.socket = os.path.abspath(args.socket)
    if args.foreground:
        return serve(args.root, args.socket, args.idle)
    return _detached(lambda ready: serve(args.root, args.socket, args.idle, ready))


def _detached(work: Callable[[Callable[[], None]], int]) -> int:
    """Run ``work`` in a grandchild in its own session; exit 0 once it says it is ready, 1 if it fails.

    The caller waits for this process, not for the watcher, which is nobody's child once this exits.
    """
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            return 0 if pipe.read() == b"ready" else 1
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.chdir("/")  # hold no directory of the caller's

    def ready() -> None:
        nonlocal write_end
        if write_end >= 0:
            os.write(write_end, b"ready")
            os.close(write_end)
            write_end = -1

    code = 1
    try:
        code = work(ready)
    except BaseException:  # noqa: BLE001 -- said in the log; the caller sees the exit status
        traceback.print_exc()
    finally:
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
