"""A target's use of its context's watcher: file rows remembered at a token, reused while still true.

Without a watcher, every key walks the context and ``stat``s every entry (:mod:`stagecache.key.walk`):
on 20,000 files that walk alone costs more than the rest of a repeat key. With a watcher running for
the context (:mod:`stagecache.speed.watcherd`; ``stagecache watch start``, or ``watch = true`` in
``[tool.stagecache]``), a key asks it first what changed since the token of the last full walk:

* nothing that can matter: the target's file rows are taken from a memo written by that walk. A change
  cannot matter when the walk never reaches its path (``.dockerignore``), when the path was in the
  context but the target does not copy it, or when the path has already gone again (an editor's swap
  file);
* files the target reads, edited in place: their rows are done again (stat, hash), the rest is taken
  from the memo, and the memo is brought up to date;
* anything else, or no answer: the context is walked as usual, and a memo is written with the token
  the watcher gave *before* the walk, so a change made during the walk is reported next time.

A memo is specific to the context and to everything else that decides which files a target reads or
what its rows say (``inputs._selection_material``, hashed by :func:`memo_key`). Files the target reads
that have more than one hard link are ``stat``ed on every key, since a write through another name
makes no event for theirs. Memos are kept in the user's cache directory, a few per context.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import marshal
import os
import stat
import sys
import time
from _socket import AF_UNIX, SOCK_STREAM
from _socket import socket as _Socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from blake3 import blake3

from .. import process, trace
from ..key.files import file_digest, signature
from ..key.ignore import IgnoreRules
from ..key.walk import Entry

_HEADER = ("stagecache memo", 2, sys.version_info[:2])
MEMOS = 8  # memos kept per context
_MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes, the last a NUL
_READ = os.R_OK | os.X_OK  # what the walk needs of a directory


class Memo(NamedTuple):
    """What one full walk gave a target, and the watcher's token from just before that walk."""

    token: str
    files: list[list[Any]]  # the manifest's file rows, sorted by path
    paths: bytes  # every entry of the context, NUL-separated: to tell a new path from an unread one
    warnings: list[str]
    uncacheable: list[str]
    # Rows of files with more than one hard link, and their stat signatures: a write through another
    # link changes the file with no event for the name the target reads, so these are stat'ed each time.
    linked: list[tuple[int, bytes]]
    fifos: list[str]  # the walk lists no FIFO, but one can be all that puts its directory in the context


def enabled() -> bool:
    """``STAGECACHE_WATCH=0`` turns watchers off altogether (no query, no start)."""
    return os.environ.get("STAGECACHE_WATCH", "").strip().lower() not in ("0", "false", "no", "off")


def socket_path(watch_dir: Path, context: Path) -> str | None:
    """Where the watcher of ``context`` answers; None if that path is too long for a Unix socket."""
    root = os.path.realpath(context)
    name = blake3(root.encode("utf-8", "surrogateescape")).hexdigest()[:24]
    path = os.path.join(watch_dir, name + ".sock")
    return path if len(os.fsencode(path)) <= _MAX_SOCKET_PATH else None


def ask(path: str, request: str, timeout: float = 2.0) -> dict[str, Any] | None:
    """Send one request to the watcher on ``path``; None when none answers (or it answers nonsense)."""
    sock = _Socket(AF_UNIX, SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        sock.sendall(request.encode("utf-8", "surrogateescape") + b"\n")
        parts = []
        while chunk := sock.recv(1 << 16):
            parts.append(chunk)
    except OSError:
        return None
    finally:
        sock.close()
    try:
        answer = json.loads(b"".join(parts))
    except ValueError:
        return None
    return answer if isinstance(answer, dict) else None


RETRY_AFTER_S = 600.0  # a watcher that failed to start is not tried again on demand before this
_STARTING = b"-- starting a watcher\n"  # in the log before each start: what follows is that start's


def start(context: Path, path: str, wait: float = 10.0) -> bool:
    """Start a watcher for ``context`` answering on ``path``, and wait until it answers.

    What a watcher that fails says goes to the log next to ``path`` (:func:`failure`).
    """
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    with open(_log(path), "ab") as log:  # appended to: a running watcher may be writing to it
        log.write(_STARTING)
        log.flush()
        # it detaches, and exits once the watcher answers (or another one already did)
        starter = process.spawn(
            [sys.executable, "-m", "stagecache.speed.watcherd", os.path.realpath(context), path],
            stdin=process.DEVNULL, stdout=log, stderr=log,
        )  # fmt: skip
        if not process.wait(starter, wait):
            starter.kill()
            starter.wait()
            log.write(b"stagecache watcher: not ready after %d s\n" % wait)
    return ask(path, "status") is not None


def failure(path: str) -> str | None:
    """The last line a watcher that failed to start on ``path`` left in its log, if it is recent."""
    try:
        st = os.stat(_log(path))
        with open(_log(path), "rb") as fh:
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return None
    marker = _STARTING.decode().strip()
    after = lines[len(lines) - lines[::-1].index(marker) :] if marker in lines else lines
    if not after or time.time() - st.st_mtime > RETRY_AFTER_S:
        return None  # the latest start said nothing: it worked, or it is too long ago
    return after[-1].removeprefix("stagecache watcher: ")


def _log(path: str) -> str:
    return path.removesuffix(".sock") + ".log"


def stop(path: str) -> bool:
    """Ask the watcher on ``path`` to exit; whether one answered."""
    return ask(path, "stop") is not None


def running(watch_dir: Path) -> list[tuple[str, dict[str, Any]]]:
    """Every watcher with its socket in ``watch_dir`` that answers, with its status."""
    found = []
    for sock in sorted(watch_dir.glob("*.sock")):
        status = ask(str(sock), "status")
        if status is not None:
            found.append((str(sock), status))
    return found


# --- memos ---------------------------------------------------------------------------------------------


class ContextWatch:
    """The watcher of one context, as the keys computed in one process use it."""

    def __init__(self, context: Path, socket: str, memo_dir: Path, *, autostart: bool = False) -> None:
        self.context = context
        self.socket = socket
        self.memo_dir = memo_dir
        self.autostart = autostart
        self.token: str | None = None  # from the latest query: what a memo written now is true at

    def reuse(self, key: str, rules: IgnoreRules) -> Memo | None:
        """The memo ``key`` if nothing that matters changed since its token; else None (walk).

        Either way this asks the watcher for a fresh token first, for :meth:`remember`.
        """
        memo = self._load(key)
        answer = ask(self.socket, f"since {memo.token if memo else ''}")
        if answer is None and self.autostart:
            # a watcher that could not start here lately is not tried on every key
            if (failed := failure(self.socket)) is not None:
                trace.debug(f"no watcher for {self.context}: {failed}")
            else:
                trace.debug(f"starting a watcher for {self.context}")
                if start(self.context, self.socket):
                    answer = ask(self.socket, "since ")
        token = answer.get("token") if answer else None
        self.token = token if isinstance(token, str) else None
        if memo is None or answer is None or self.token is None or answer.get("all"):
            return None
        changed = answer.get("changed")
        if not isinstance(changed, list):
            return None
        root = os.path.join(self.context, "")
        stale = to_refresh(
            changed, rules, memo, lambda rel: _lstat(root + rel), lambda rel: os.access(root + rel, _READ)
        )
        if stale is None:
            trace.debug(f"watcher: {len(changed)} changes since the memo, not all of file content: walking")
            return None
        stale_rows = dict(stale)
        linked = {}
        for at, sig in memo.linked:  # stat'ed every time: see Memo.linked
            st = _lstat(root + memo.files[at][0])
            if st is None or not stat.S_ISREG(st.st_mode):
                return None
            if signature(st) != sig:
                stale_rows[at] = st
            linked[at] = signature(st)
        for at, st in stale_rows.items():  # a file the target reads, still a file: only its row changes
            if st.st_nlink > 1:  # a hard link now or still: which copied file it is linked to counts in
                return None  # the key (key.inputs._describe), and only a walk can tell
            path = memo.files[at][0]
            try:
                digest = file_digest(root + path, st.st_size)
            except OSError:
                return None  # gone again since: the walk will say what is there
            memo.files[at] = [path, "file", oct(st.st_mode & 0o7777), digest]
        if changed or stale_rows:
            memo = memo._replace(token=self.token, linked=sorted(linked.items()))
            self._save(key, memo)  # the next query lists only what changes from now on
        trace.debug(f"watcher: {len(changed)} changes, {len(stale_rows)} file(s) the target reads: no walk")
        return memo

    def remember(
        self,
        key: str,
        files: list[list[Any]],
        chosen: list[Entry],
        entries: list[Entry],
        fifos: list[str],
        warnings: list[str],
        uncacheable: list[str],
    ) -> None:
        """Write the memo of a full walk made after the latest query; nothing without a token.

        ``files`` are the rows of the ``chosen`` entries, in order; ``entries`` the whole walk.
        """
        if self.token is None:
            return
        blob = "\0".join(e.path for e in entries).encode("utf-8", "surrogateescape")
        linked = [(at, e.signature) for at, e in enumerate(chosen) if e.links > 1 and e.signature is not None]
        self._save(key, Memo(self.token, files, blob, warnings, uncacheable, linked, fifos))

    def _file(self, key: str) -> Path:
        return self.memo_dir / f"{key}.memo"

    def _load(self, key: str) -> Memo | None:
        try:
            data = marshal.loads(self._file(key).read_bytes())  # noqa: S302 -- the user's own cache file
            header, root, memo = data
            if header != _HEADER or root != str(self.context):
                return None
            return Memo(*memo)
        except (OSError, EOFError, ValueError, TypeError):
            return None  # none yet, or not one this version wrote

    def _save(self, key: str, memo: Memo) -> None:
        path = self._file(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            self.memo_dir.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(marshal.dumps((_HEADER, str(self.context), tuple(memo))))
            os.replace(tmp, path)
            self._prune()
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def _prune(self) -> None:
        memos = []
        for entry in os.scandir(self.memo_dir):
            if entry.name.endswith(".memo"):
                with contextlib.suppress(OSError):
                    memos.append((entry.stat().st_mtime_ns, entry.path))
        for _, stale in sorted(memos, reverse=True)[MEMOS:]:
            with contextlib.suppress(OSError):
                os.unlink(stale)


def to_refresh(
    changed: list[str],
    rules: IgnoreRules,
    memo: Memo,
    lstat: Callable[[str], os.stat_result | None],
    readable: Callable[[str], bool] = lambda rel: True,
) -> list[tuple[int, os.stat_result]] | None:
    """The rows of ``memo`` that the paths in ``changed`` make stale, each with its file's ``lstat`` now;
    None when the memo cannot be brought up to date that way and the context must be walked.

    A change does not matter when the walk never reaches its path, when the path was in the context but
    the target does not read it, or when it no longer exists and was not in the context (made and removed
    since). A file the target reads that is still a regular file only needs its row done again (its mode
    and digest: its path, so whether it is read, stays the same). Anything else that touches what the
    target reads needs the walk: a path that is new to the context (a wildcard or a directory source may
    pick it up), a read path removed or turned into something else, a symlink or a directory changed.
    So do a directory of the context that ``readable`` says cannot be read now (the walk fails on it),
    and a FIFO's path (the walk lists none, yet one can keep an excluded directory in the context).
    """
    selected = [row[0] for row in memo.files]
    known: set[str] | None = None
    stale: dict[int, os.stat_result] = {}
    for rel in changed:
        if not isinstance(rel, str):
            return None
        if unreached(rel, rules):
            continue
        if memo.fifos and any(f == rel or f.startswith(rel + "/") for f in memo.fifos):
            return None
        if _covers(selected, rel):
            at = bisect.bisect_left(selected, rel)
            st = lstat(rel) if selected[at] == rel and memo.files[at][1] == "file" else None
            if st is None or not stat.S_ISREG(st.st_mode):
                return None
            stale[at] = st
            continue
        if known is None:
            known = set(memo.paths.decode("utf-8", "surrogateescape").split("\0"))
        st = lstat(rel)
        if st is None:  # removed: unread if it was in the context, else made and removed since
            continue
        if rel in known:  # in the context, unread
            if stat.S_ISDIR(st.st_mode) and not readable(rel):
                return None
            continue
        return None
    return sorted(stale.items())


def _lstat(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def unreached(rel: str, rules: IgnoreRules) -> bool:
    """Whether the context walk never lists ``rel`` nor anything below it, whatever it is.

    That is so when ``rel`` or a directory above it is excluded and no exception pattern could
    re-include anything below the excluded one (:meth:`IgnoreRules.may_reinclude_below`). The context's
    root itself (``""``) is not an entry of the walk.
    """
    if not rel:
        return True
    if not rules.patterns:
        return False
    parts = rel.split("/")
    state: list[bool] | None = None
    for depth in range(1, len(parts) + 1):
        path = "/".join(parts[:depth])
        excluded, state = rules._step(path, state)
        if excluded and not rules.may_reinclude_below(path):
            return True
    return False


def _covers(selected: list[str], rel: str) -> bool:
    """Whether the sorted ``selected`` holds ``rel`` or a path below it."""
    at = bisect.bisect_left(selected, rel)
    if at < len(selected) and selected[at] == rel:
        return True
    below = bisect.bisect_left(selected, rel + "/")
    return below < len(selected) and selected[below].startswith(rel + "/")
