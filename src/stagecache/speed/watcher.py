"""The context watcher: a resident process that says what changed in a build context since a token.

A repeat key must otherwise ``stat`` every entry of the context, which on a large context costs more
than everything else the key does. Git's fsmonitor and watchman solve the same problem the same way:
a process that stays up, watches every directory with inotify, and answers "these paths changed since
your token" to a client that remembers what it computed at that token (see :mod:`stagecache.speed.watch`).

Started as ``python -m stagecache.speed.watcherd ROOT SOCKET`` (:mod:`stagecache.speed.watcherd`), it

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

import contextlib
import os
import re
import secrets
import select
import time
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
