"""The context watcher: a resident process that says what changed in a build context since a token.

A repeat key must otherwise ``stat`` every entry of the context, which on a large context costs more
than everything else the key does. Git's fsmonitor and watchman solve the same problem the same way:
a process that stays up, watches every directory with inotify, and answers "these paths changed since
your token" to a client that remembers what it computed at that token (see :mod:`stagecache.watch`).

Started as ``python -m stagecache.watcher ROOT SOCKET``, it

* takes ``SOCKET.lock`` (a second watcher of the same root exits at once), watches every directory
  under ``ROOT`` (symlinks are not followed, as the walk does not follow them), and only then listens;
* numbers every change it sees; a token is ``<instance>:<number>``, ``instance`` being random per
  process, so a token from a watcher that has since restarted is never taken for one of this watcher;
* before answering a query, reads every event the kernel has queued. inotify queues an event in the
  system call that made the change, so a change completed before the client asked is in the answer;
* answers ``all`` when it cannot list the changes since a token: the token is from another instance, or
  the kernel's event queue overflowed after it, or the list of changes grew past ``MAX_CHANGED``;
* exits when the root is removed or moved, after ``--idle`` seconds without a query, on ``stop`` and on
  SIGTERM or SIGINT, removing its socket.

Requests are one line on a fresh connection: ``since TOKEN`` (an empty token for a first query),
``status`` or ``stop``. Each answer is one JSON object.

What inotify does not see, the watcher cannot report: writes through a memory map, a change made
through a hard link from outside the context, and changes on network file systems made by another
machine. ``STAGECACHE_WATCH=0`` turns the watcher off for a project where that matters.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import select
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator

from inotify_simple import INotify, flags

MASK = (
    flags.MODIFY | flags.ATTRIB | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
    | flags.DELETE_SELF | flags.MOVE_SELF | flags.DONT_FOLLOW | flags.ONLYDIR
)  # fmt: skip
MAX_CHANGED = 200_000  # paths remembered; past this the watcher starts over and older tokens get "all"
IDLE_S = 4 * 3600.0
REQUEST_TIMEOUT_S = 2.0


class WatchLimit(Exception):
    """The kernel refuses another watch (``fs.inotify.max_user_watches``)."""


class Watcher:
    """The watches on one root and the changes seen under it."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.instance = secrets.token_hex(8)
        self.seq = 0  # the number of the latest change
        self.valid_from = 0  # tokens numbered below this cannot be answered
        self.changed: dict[str, int] = {}  # relative path -> number of its latest change
        self.started = time.time()
        self.alive = True
        self.inotify = INotify()
        self.dirs: dict[int, str] = {}  # watch descriptor -> directory, relative ("" is the root)
        self.wds: dict[str, int] = {}
        self._scan("", report=False)
        self.root_wd = self.wds[""]

    # --- watches --------------------------------------------------------------------------------------
    def _scan(self, top: str, *, report: bool) -> None:
        """Watch ``top`` and every directory below it; with ``report``, count everything found as changed.

        Each directory is watched before it is listed, so an entry made in between is seen either way.
        """
        todo = [top]
        while todo:
            rel = todo.pop()
            if not self._watch(rel):
                continue
            try:
                with os.scandir(self._abs(rel)) as it:
                    children = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
            except OSError:
                continue  # gone again, or unreadable: the walk cannot read it either
            for name, is_dir in children:
                path = f"{rel}/{name}" if rel else name
                if report:
                    self._mark(path)
                if is_dir:
                    todo.append(path)

    def _watch(self, rel: str) -> bool:
        try:
            wd = self.inotify.add_watch(self._abs(rel), MASK)
        except OSError as exc:
            if exc.errno == 28:  # ENOSPC: out of watches
                raise WatchLimit(
                    "the kernel allows no more inotify watches: raise fs.inotify.max_user_watches"
                ) from exc
            return False  # gone, not a directory any more, or unreadable
        old = self.dirs.get(wd)
        if old is not None and old != rel:  # the same directory under a new name
            self.wds.pop(old, None)
        self.dirs[wd] = rel
        self.wds[rel] = wd
        return True

    def _forget(self, top: str) -> None:
        """Stop watching ``top`` and everything below it (it was moved away)."""
        below = top + "/"
        for rel in [r for r in self.wds if r == top or r.startswith(below)]:
            wd = self.wds.pop(rel)
            self.dirs.pop(wd, None)
            with contextlib.suppress(OSError):
                self.inotify.rm_watch(wd)

    def _abs(self, rel: str) -> str:
        return os.path.join(self.root, rel) if rel else self.root

    # --- changes --------------------------------------------------------------------------------------
    def _mark(self, rel: str) -> None:
        self.seq += 1
        self.changed[rel] = self.seq

    def _start_over(self) -> None:
        """Forget every change: tokens issued so far are answered with ``all``."""
        self.seq += 1
        self.valid_from = self.seq
        self.changed.clear()

    def drain(self) -> None:
        """Take in every event the kernel has queued."""
        while events := self.inotify.read(timeout=0):
            for event in events:
                if event.mask & flags.Q_OVERFLOW:
                    self._overflowed()
                    break  # the rest of the batch came from the watches just dropped
                self._event(event.wd, event.mask, event.name)
            if len(self.changed) > MAX_CHANGED:
                self._start_over()

    def _overflowed(self) -> None:
        """The kernel dropped events: start over, with fresh watches (a missed new directory has none)."""
        self.inotify.close()
        self.inotify = INotify()
        self.dirs.clear()
        self.wds.clear()
        self._start_over()
        self._scan("", report=False)
        self.root_wd = self.wds.get("", -1)
        self.alive = self.root_wd != -1

    def _event(self, wd: int, mask: int, name: str) -> None:
        base = self.dirs.get(wd)
        if base is None:
            return  # a watch already forgotten
        if mask & flags.IGNORED:
            self.dirs.pop(wd, None)
            if self.wds.get(base) == wd:
                del self.wds[base]
            if wd == self.root_wd:
                self.alive = False
            return
        if mask & (flags.DELETE_SELF | flags.MOVE_SELF):
            if wd == self.root_wd:
                self.alive = False  # the context is gone: clients must walk
            return  # any other directory's move or removal is reported by its parent
        rel = f"{base}/{name}" if base and name else (name or base)
        self._mark(rel)
        if mask & flags.ISDIR:
            if mask & flags.MOVED_FROM:
                self._forget(rel)
            elif mask & (flags.CREATE | flags.MOVED_TO) or (mask & flags.ATTRIB and rel not in self.wds):
                self._scan(rel, report=True)  # what it holds arrived with it, unreported

    # --- queries --------------------------------------------------------------------------------------
    def since(self, token: str) -> dict[str, object]:
        self.drain()
        instance, _, number = token.partition(":")
        answer: dict[str, object] = {"token": f"{self.instance}:{self.seq}"}
        if instance == self.instance and number.isdigit() and int(number) >= self.valid_from:
            after = int(number)
            answer["changed"] = sorted(rel for rel, seq in self.changed.items() if seq > after)
        else:
            answer["all"] = True
        return answer

    def status(self) -> dict[str, object]:
        self.drain()
        return {
            "root": self.root,
            "pid": os.getpid(),
            "started": self.started,
            "directories": len(self.wds),
            "changes": self.seq,
        }


def serve(root: str, socket_path: str, idle: float, ready: Callable[[], None] = lambda: None) -> int:
    """Watch ``root`` and answer on ``socket_path`` until told to stop; 0 also when another watcher runs.

    ``ready`` is called once clients can ask.
    """
    lock = os.open(socket_path + ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        ready()
        return 0  # another watcher has this root
    try:
        watcher = Watcher(os.path.realpath(root))
    except WatchLimit as exc:
        print(f"stagecache watcher: {root}: {exc}", file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(socket_path)  # a watcher that died left it
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o077)
    try:
        server.bind(socket_path)
    finally:
        os.umask(old_umask)
    server.listen(16)
    ready()
    stopping = False

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller = select.poll()
    poller.register(server.fileno(), select.POLLIN)
    last_query = time.monotonic()
    try:
        while not stopping and watcher.alive:
            fd = watcher.inotify.fileno()
            with _registered(poller, fd):
                readable = {f for f, _ in poller.poll(60_000)}
            if fd in readable:
                watcher.drain()
            if server.fileno() in readable:
                last_query = time.monotonic()
                stopping = _answer(server, watcher)
            if time.monotonic() - last_query > idle:
                break
    except WatchLimit as exc:
        print(f"stagecache watcher: {root}: {exc}", file=sys.stderr)
        return 1
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(socket_path)
        server.close()
    return 0


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
        conn.settimeout(REQUEST_TIMEOUT_S)
        try:
            line = conn.makefile("rb").readline(65536).decode("utf-8", "surrogateescape").strip()
        except OSError:
            return False
        verb, _, arg = line.partition(" ")
        if verb == "since":
            answer = watcher.since(arg)
        elif verb == "status":
            answer = watcher.status()
        elif verb == "stop":
            answer = {"stopping": True}
        else:
            answer = {"error": f"unknown request {verb!r}"}
        with contextlib.suppress(OSError):
            conn.sendall(json.dumps(answer).encode() + b"\n")
        return verb == "stop"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stagecache.watcher", description=__doc__.splitlines()[0])
    parser.add_argument("root", help="the directory to watch")
    parser.add_argument("socket", help="the Unix socket to answer on")
    parser.add_argument("--idle", type=float, default=IDLE_S, help="exit after this many seconds unasked")
    parser.add_argument("--foreground", action="store_true", help="do not detach")
    args = parser.parse_args(argv)
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

    def ready() -> None:
        nonlocal write_end
        if write_end >= 0:
            os.write(write_end, b"ready")
            os.close(write_end)
            write_end = -1

    code = 1
    try:
        code = work(ready)
    finally:
        os._exit(code)


if __name__ == "__main__":
    sys.exit(main())
