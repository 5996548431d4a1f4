"""The walk of a build context: what BuildKit's client sends, entry by entry, under the ignore rules
(:mod:`stagecache.key.ignore`). Symlinks are sent as links, never followed; sockets and devices as
empty files; FIFOs are dropped. The library never reads file contents here: hashing is
:mod:`stagecache.key.files`' (and the digest caches') job.
"""

from __future__ import annotations

import os
import stat
from operator import attrgetter
from pathlib import Path
from typing import Literal

from ..errors import ConfigError
from .files import signature
from .ignore import IgnoreRules

Kind = Literal["file", "dir", "symlink", "special", "fifo"]  # fifo: only as the selection sees it


class Entry:
    """One thing BuildKit sends from the context.

    ``path`` is relative to the context, ``/``-separated, without a leading ``./``. ``mode`` holds the
    permission bits, setuid/setgid/sticky included. ``size`` is the file size, the length of a link's
    target, or 0 for directories and special files. ``kind == "special"`` is a socket or a device
    node: it arrives in the image as an empty regular file with ``mode``, and must not be opened.

    ``content_refused`` marks a file that BuildKit lists but then refuses to read, because the
    ignore rules exclude it under the stricter test fsutil applies when opening files (see
    :meth:`IgnoreRules.excluded_on_open`). The image gets an empty file, or a stale copy when the
    engine's context cache still holds one with the same size and mtime: such a build is not
    reproducible. Adding ``!<path>`` as the last line of the ignore file fixes it.
    """

    __slots__ = (
        "content_refused", "inode", "kind", "link_target", "links", "mode", "path", "signature", "size"
    )  # fmt: skip

    def __init__(
        self,
        path: str,
        kind: Kind,
        mode: int,
        size: int,
        link_target: str | None = None,
        content_refused: bool = False,
        signature: bytes | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.link_target = link_target
        self.content_refused = content_refused
        # a file's packed stat signature (stagecache.speed.digests.signature): the digest cache needs no
        # second stat. Not part of the entry's identity, nor is the file's number of hard links.
        self.signature = signature
        self.links = 1
        self.inode: tuple[int, int] | None = None  # (device, inode) of a file with several hard links

    def _identity(self) -> tuple[object, ...]:
        return (self.path, self.kind, self.mode, self.size, self.link_target, self.content_refused)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return "Entry({})".format(", ".join(map(repr, self._identity())))


_S_IFMT, _S_IFREG, _S_IFDIR = stat.S_IFMT(0o177777), stat.S_IFREG, stat.S_IFDIR


def walk(context: Path, rules: IgnoreRules, *, fifos: list[str] | None = None) -> list[Entry]:
    """The entries BuildKit transfers for ``context`` under ``rules``, sorted by path.

    Directories are entries (``COPY`` keeps empty ones). Symlinks are never followed. An excluded
    directory is not read at all unless an exception pattern could re-include something inside it.
    FIFOs are sent but dropped on the engine's side, so they are no entries; with ``fifos``, their paths
    are added to it (one can be all that puts an excluded directory in the context).
    """
    root = os.fspath(context)
    if not os.path.isdir(root):
        raise ConfigError(f"{context}: the build context is not a directory: point the target at one")
    walker = _Walker(rules, root, fifos)
    ancestors = [False] * len(rules.patterns) if rules._exceptions else None
    walker.walk(None, root, "", None, ancestors, [])
    walker.out.sort(key=attrgetter("path"))
    return walker.out


# Directories are opened, and their entries stat'ed relative to them (fstatat): the kernel resolves one
# name per stat instead of the whole path, a tenth of a large walk.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class _Pending:
    """An excluded directory that is sent only if something below it is."""

    __slots__ = ("entry", "sent")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.sent = False


class _Walker:
    """fsutil's filtered walk over one context."""

    def __init__(self, rules: IgnoreRules, root: str, fifos: list[str] | None) -> None:
        self.rules = rules
        self.tests = rules._tests
        self.root = root
        self.out: list[Entry] = []
        self.fifos = fifos

    def walk(
        self,
        parent: int | None,
        name: str,
        prefix: str,
        state: list[bool] | None,
        ancestors: list[bool] | None,
        pending: list[_Pending],
    ) -> None:
        """Walk the directory ``name`` of the open directory ``parent`` (context path ``prefix``).

        ``state`` is what the directory got from the matcher; ``ancestors[i]`` says whether pattern
        ``i`` matches the directory or one above it (kept only when there are exceptions, for the
        open-time test); ``pending`` are the excluded directories above it not sent yet.
        """
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while we walked
        except PermissionError as exc:
            self._unreadable(prefix, pending, exc)
            return
        try:
            try:
                with os.scandir(fd) as it:
                    children = list(it)
            except PermissionError as exc:
                self._unreadable(prefix, pending, exc)
                return
            # The hot loop of a key: one pass per context entry, so it inlines what a helper would do.
            rules = self.rules
            filtering = bool(rules.patterns)
            out = self.out
            for child in children:
                path = prefix + child.name
                try:
                    st = child.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                mode = st.st_mode
                fmt = mode & _S_IFMT
                child_state: list[bool] | None = None
                if filtering:
                    excluded, child_state = rules._step(path, state)
                    if excluded:
                        if fmt == _S_IFDIR and rules.may_reinclude_below(path):
                            waiting_dir = _Pending(Entry(path, "dir", mode & 0o7777, 0))
                            below = self._ancestors(path, ancestors)
                            self.walk(fd, child.name, path + "/", child_state, below, [*pending, waiting_dir])
                        continue
                if pending:
                    for waiting in pending:
                        if not waiting.sent:
                            out.append(waiting.entry)
                            waiting.sent = True
                if fmt == _S_IFREG:
                    sig = signature(st)
                    refused = ancestors is not None and self._refused(path, ancestors)
                    item = Entry(path, "file", mode & 0o7777, st.st_size, None, refused, sig)
                    if st.st_nlink > 1:
                        item.links = st.st_nlink
                        item.inode = (st.st_dev, st.st_ino)
                    out.append(item)
                elif fmt == _S_IFDIR:
                    out.append(Entry(path, "dir", mode & 0o7777, 0))
                    self.walk(fd, child.name, path + "/", child_state, self._ancestors(path, ancestors), [])
                elif (entry := _other_entry(fd, child.name, path, st)) is not None:
                    out.append(entry)
                elif self.fifos is not None and stat.S_ISFIFO(mode):
                    self.fifos.append(path)
        finally:
            os.close(fd)

    def _unreadable(self, prefix: str, pending: list[_Pending], exc: OSError) -> None:
        if pending:  # BuildKit ignores unreadable excluded directories
            return
        where = os.path.normpath(os.path.join(self.root, prefix))
        raise ConfigError(
            f"{where}: cannot read this directory of the build context ({exc.strerror}): "
            "make it readable, or exclude it in .dockerignore"
        ) from exc

    def _ancestors(self, path: str, ancestors: list[bool] | None) -> list[bool] | None:
        if ancestors is None:
            return None
        return [above or test(path) for above, (_, test) in zip(ancestors, self.tests, strict=True)]

    def _refused(self, path: str, ancestors: list[bool]) -> bool:
        """``excluded_on_open`` for a file whose directory's ``ancestors`` vector is known."""
        matched = False
        for above, (exception, test) in zip(ancestors, self.tests, strict=True):
            if exception == matched and (above or test(path)):
                matched = not exception
        return matched


def _other_entry(fd: int, name: str, path: str, st: os.stat_result) -> Entry | None:
    """The entry of something that is neither a regular file nor a directory (``name`` in ``fd``)."""
    mode = st.st_mode
    perms = stat.S_IMODE(mode)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=fd)
        except FileNotFoundError:
            return None
        return Entry(path, "symlink", perms, st.st_size, target)
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Entry(path, "special", perms, 0)
    return None  # a FIFO: sent, then dropped on the engine's side
