"""Saves that nobody waits for: a built image is in the daemon, so what follows (the tests, the next
target) need not wait for it to reach the store.

:class:`BackgroundTier` is the directory tier with its ``publish`` run in a thread of its own: the
resolver hands it the image and goes on; images handed over while a save runs go into the next
save together (one ``docker save``, their shared layers read once). The command waits for the last
save before it exits (:meth:`BackgroundTier.finish`), and says in one line what was stored, how many
bytes were new, and how long it took. Interrupted (Ctrl-C, a failure), the save in progress stops
between two blobs and writes no record: the store holds the entry whole or not at all.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

from ..progress import Reporter
from .local import DirectoryTier
from .tiers import Found, Publish


class BackgroundTier:
    """A :class:`DirectoryTier` whose saves run beside the caller."""

    def __init__(self, tier: DirectoryTier, reporter: Reporter) -> None:
        self.tier = tier
        self.writable = tier.writable
        self.reporter = reporter
        self._pending: list[Publish] = []
        self._lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._current: list[Publish] = []
        self._cancelled = threading.Event()
        self.stopped = False  # a save was called off before its record
        self.saved = 0  # entries stored by this process's saves
        self.failed = 0

    @property
    def name(self) -> str:
        return self.tier.name

    def has(self, key: str) -> bool:
        """Whether the store has the key, or will once the saves under way end (a key handed over
        is not published again, nor locked by the caller meanwhile)."""
        with self._lock:
            if any(p.key == key for p in (*self._pending, *self._current)):
                return True
        return self.tier.has(key)

    def fetch(self, key: str, ref: str, target: str) -> Found | None:
        return self.tier.fetch(key, ref, target)

    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        return self.tier.lock(key, on_wait)

    def publish(self, item: Publish) -> bool:
        """Queue the image for the store and return at once (True: it is on its way)."""
        with self._lock:
            if any(p.key == item.key for p in self._pending):
                return True
            self._pending.append(item)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._work, name="stagecache-save", daemon=True)
                self._worker.start()
        return True

    def _work(self) -> None:
        while not self._cancelled.is_set():
            with self._lock:
                batch, self._pending = self._pending, []
                self._current = batch
                if not batch:
                    self._worker = None
                    return
            try:
                if not self._save(batch):
                    self.stopped = True
            except Exception as exc:  # noqa: BLE001 -- a save never fails the command: it is said
                self.failed += len(batch)
                self.reporter.warn(f"{_names(batch)}: not stored: {exc}")
        with self._lock:  # called off: what was still queued is not saved either
            if self._pending:
                self.stopped = True
                self._current, self._pending = self._pending, []

    def _save(self, batch: list[Publish]) -> bool:
        """Save a batch; False when it was called off before its records."""
        start = time.monotonic()
        with contextlib.ExitStack() as held:
            if not self._hold(batch, held):
                return False  # called off while another process held a key
            # Another process may have stored a key meanwhile: it is not saved twice (unless what
            # the store has would not load here: then it is replaced).
            broken = self.tier.failed_loads
            todo = [item for item in batch if item.key in broken or self.tier.store.get(item.key) is None]
            if not todo:
                return True
            stored = self.tier.publish_many(todo, cancelled=self._cancelled.is_set)
            if self.tier.last_cancelled:
                return False
        self.saved += stored
        self.failed += len(todo) - stored
        done = self.tier.last_saved
        if stored and done is not None:
            self.reporter.step(
                _names(todo),
                f"stored {stored} image{'s' if stored > 1 else ''} in the store: "
                f"{_size(done.new_bytes)} new of {_size(done.image_bytes)}, "
                f"{time.monotonic() - start:.1f}s",
            )
        return True

    def _hold(self, batch: list[Publish], held: contextlib.ExitStack) -> bool:
        """Take every key's lock, all or none at a time (never holding one while waiting for another:
        this process's build may hold one of them while it waits for another, as may other
        processes). False when cancelled first."""
        keys = sorted({item.key for item in batch})
        while not self._cancelled.is_set():
            got = [self.tier.store.try_lock(key) for key in keys]
            if all(fh is not None for fh in got):
                for fh in got:
                    held.callback(fh.close)  # type: ignore[union-attr]
                return True
            for fh in got:
                if fh is not None:
                    fh.close()
            time.sleep(0.1)
        return False

    def finish(self, *, cancel: bool = False) -> None:
        """Wait for the saves: all of them, or (``cancel``) the one in progress to stop cleanly."""
        if cancel:
            self._cancelled.set()
        worker = self._worker
        if worker is None:
            return
        names = _names(self._current) or "store"
        if worker.is_alive() and not cancel:
            self.reporter.step(names, "waiting for the save into the store")
        while worker.is_alive():
            worker.join(0.2)
        if cancel and self.stopped:
            self.reporter.warn(
                f"{names}: save into the store stopped before its record; the store is unchanged"
            )


def _size(n: int) -> str:
    """Bytes for a person: ``12.3 kB``, ``4.5 MB``, ``1.20 GB``."""
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.1f} MB" if n < 1e9 else f"{n / 1e9:.2f} GB"


def _names(items: list[Publish]) -> str:
    return ", ".join(dict.fromkeys(i.target for i in items))
