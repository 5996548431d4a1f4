"""The context watcher: a resident process that says what changed in a build context since a token.

A repeat key must otherwise ``stat`` every entry of the context, which on a large context costs more
than everything else the key does. Git's fsmonitor and watchman solve the same problem the same way:
a process that stays up, watches every directory with inotify, and answers "these paths changed since
your token" to a client that remembers what it computed at that token (see :mod:`stagecache.speed.watch`).

Started as ``python -m stagecache.speed.watcher ROOT SOCKET``, it

* takes ``SOCKET.lock`` (a second watcher of the same root exits at once), watches every directory
  under ``ROOT`` (symlinks are not followed, as the walk does not follow them), and only then listens;
* numbers every change it sees; a token is ``<instance>:<number>``, ``instance`` being random per
  process, so a token from a watcher that has since restarted is never taken for one of this watcher;
* before answering a query, reads every event the kernel has queued. inotify queues an event in the
  system call that made the change, so a change completed before the client asked is in the answer;
* answers ``all`` when it cannot list the changes since a token: the token is from another instance, or
  the kernel's event queue overflowed after it, or the list of changes grew past ``MAX_CHANGED``;
* answers ``all``, and exits, once the root is removed or moved, or its path leads to another directory;
  and starts over when a file system is mounted, unmounted or replaced at or below the root (a mount
  makes no inotify event for the files it covers);
* exits after ``--idle`` seconds without a query, on ``stop`` and on SIGTERM or SIGINT, removing its
  socket; and when its socket is no longer there (nobody could ask it anything).

Requests are one line on a fresh connection: ``since TOKEN`` (an empty token for a first query),
``status`` or ``stop``. Each answer is one JSON object.

What inotify does not see, the watcher cannot report: writes through a memory map, and changes made on
another machine. It refuses to watch a network or FUSE file system (or exits when one is mounted below
the root), where the second is the rule.
(Writes through a hard link are the client's business: see :mod:`stagecache.speed.watch`.)
``STAGECACHE_WATCH=0`` turns watchers off for a project where that matters.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
import secrets
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from stat import S_ISDIR
from typing import BinaryIO, NamedTuple

from inotify_simple import INotify, flags

MASK = (
    flags.MODIFY | flags.ATTRIB | flags.CREATE | flags.DELETE | flags.MOVED_FROM | flags.MOVED_TO
    | flags.DELETE_SELF | flags.MOVE_SELF | flags.DONT_FOLLOW | flags.ONLYDIR
)  # fmt: skip
MAX_CHANGED = 200_000  # paths remembered; past this the watcher starts over and older tokens get "all"
IDLE_S = 4 * 3600.0
REQUEST_TIMEOUT_S = 2.0


# File systems where other machines change files: inotify only hears about local changes.
REMOTE_FS = {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "virtiofs", "ceph", "glusterfs", "afs", "lustre",
             "gpfs", "fuse"}  # fmt: skip


class CannotWatch(Exception):
    """The root cannot be watched reliably: the message says why and what to do."""


class WatchLimit(CannotWatch):
    """The kernel refuses another watch (``fs.inotify.max_user_watches``)."""


class Watcher:
    """The watches on one root and the changes seen under it."""

    def __init__(self, root: str) -> None:
        self.root = root
        try:
            st = os.stat(root)
        except OSError as exc:
            raise CannotWatch(f"{root}: {exc.strerror}") from exc
        if not S_ISDIR(st.st_mode):
            raise CannotWatch(f"{root}: not a directory")
        self.identity = (st.st_dev, st.st_ino)
        self.mounts = Mounts(root)
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
        self.root_wd = self.wds.get("", -1)
        if self.root_wd == -1:
            self.close()
            raise CannotWatch(f"{root}: cannot watch it (unreadable?)")

    def close(self) -> None:
        self.inotify.close()
        self.mounts.close()

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
        """Take in every event the kernel has queued, and check the root is still the one watched."""
        try:
            st = os.stat(self.root)
            if (st.st_dev, st.st_ino) != self.identity:
                self.alive = False  # moved away, and something else put in its place
        except OSError:
            self.alive = False
        if self.mounts.changed():
            self._overflowed()  # the files under a new or removed mount changed without events
        while events := self.inotify.read(timeout=0):
            for event in events:
                # Lost events, or a file system unmounted under a watch (what it covered may have
                # changed unseen): start over.
                if event.mask & (flags.Q_OVERFLOW | flags.UNMOUNT):
                    self._overflowed()
                    break  # the rest of the batch came from the watches just dropped
                self._event(event.wd, event.mask, event.name)
            if len(self.changed) > MAX_CHANGED:
                self._start_over()

    def _overflowed(self) -> None:
        """Events were lost: start over, with fresh watches (a missed new directory has none)."""
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
        valid = number.isascii() and number.isdigit() and len(number) < 20
        if self.alive and instance == self.instance and valid and int(number) >= self.valid_from:
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


class Mount(NamedTuple):
    """A line of ``/proc/self/mountinfo``: its mount point and type, and the whole line to compare.

    (IDs alone do not tell mounts apart: the kernel gives a new mount the lowest free one.)
    """

    point: str
    fstype: str
    line: str


def _remote(fstype: str) -> bool:
    return fstype in REMOTE_FS or fstype.startswith("fuse.")


class Mounts:
    """The mounts at or below a root, from ``/proc/self/mountinfo``, which wakes a poll when they change."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._file: BinaryIO | None = None
        self._poll = select.poll()
        try:
            self._file = open("/proc/self/mountinfo", "rb")  # noqa: SIM115 -- open as long as the watcher
            self._poll.register(self._file.fileno(), select.POLLPRI | select.POLLERR)
        except OSError:
            self._file = None  # no /proc: mounts go unnoticed
        table = self._read()
        self.below = mounts_below(root, table)
        try:
            self._refuse_remote([(root, fstype_of(root, table))])
        except CannotWatch:
            self.close()
            raise

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def changed(self) -> bool:
        """Whether a mount at or below the root came, went or was replaced since the last call.

        Raises :class:`CannotWatch` for a network or FUSE file system mounted below the root.
        """
        if self._file is None or not self._poll.poll(0):
            return False
        below = mounts_below(self.root, self._read())
        if below == self.below:
            return False
        self.below = below
        self._refuse_remote([])
        return True

    def _refuse_remote(self, also: list[tuple[str, str]]) -> None:
        """Raise :class:`CannotWatch` if a mount below the root, or in ``also`` (where, type), is remote."""
        for where, kind in [*also, *((m.point, m.fstype) for m in self.below)]:
            if _remote(kind):
                raise CannotWatch(
                    f"{where} is on a {kind} file system, where inotify does not hear of changes made "
                    "elsewhere: keys walk the context there"
                )

    def _read(self) -> list[Mount]:
        """Every mount. (The kernel re-arms the poll when the file is read again.)"""
        if self._file is None:
            return []
        self._file.seek(0)
        table = []
        for line in self._file.read().decode("utf-8", "surrogateescape").splitlines():
            fields, _, rest = line.partition(" - ")
            parts = fields.split(" ")
            if len(parts) >= 5 and rest:
                # spaces, tabs, newlines and backslashes in mount points are octal escapes
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), parts[4])
                table.append(Mount(point, rest.split(" ")[0], line))
        return table


def mounts_below(root: str, table: list[Mount]) -> frozenset[Mount]:
    """The mounts of ``table`` at or below ``root``."""
    inside = root.rstrip("/") + "/"
    return frozenset(m for m in table if m.point == root or m.point.startswith(inside))


def fstype_of(root: str, table: list[Mount]) -> str:
    """The type of the file system ``root`` is on: that of the longest mount point above it."""
    best, fstype = -1, ""
    for mount in table:
        prefix = mount.point.rstrip("/") + "/"
        if (root.rstrip("/") + "/").startswith(prefix) and len(prefix) > best:
            best, fstype = len(prefix), mount.fstype
    return fstype


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
        prog="python -m stagecache.speed.watcher", description=__doc__.splitlines()[0]
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
