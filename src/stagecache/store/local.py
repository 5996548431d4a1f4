"""The directory store as an image tier: a hit streams the entry's load plan, made from its blobs, into
``docker load``; publishing saves the daemon's images once and keeps the blobs the store lacks."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, NamedTuple

from ..engine.base import Engine
from ..errors import CommandError, StoreError
from ..key.digest import canonical
from ..progress import Reporter
from ..refs import KEY_LABEL
from .directory import CorruptEntry, DirectoryStore
from .tiers import Found, Publish

if TYPE_CHECKING:
    from .entry import Entry


class DirectoryTier:
    """A :class:`DirectoryStore` (a CI cache directory, or the user's cache) as the tier after the daemon."""

    name = "store"

    def __init__(
        self,
        store: DirectoryStore,
        engine: Engine,
        reporter: Reporter,
        max_size: int | None = None,
        *,
        writable: bool = True,
    ) -> None:
        self.writable = writable  # False: read only (a developer's machine, see Settings.saves)
        self.store = store
        self.engine = engine
        self.reporter = reporter
        self.max_size = max_size  # ``store-max-size``: pruned to it after every save, by any command
        self.last_saved: Saved | None = None
        # diff IDs of the images this tier loaded: the next load (a target after its stages) does not
        # send the layers they gave the daemon again
        self.loaded: list[tuple[str, ...]] = []
        self.failed_loads: set[str] = set()  # keys whose entry docker load refused: a save replaces them
        self.last_cancelled = False  # the last save was called off before its records

    def _keep_within_limit(self) -> None:
        if self.max_size is None:
            return
        for entry in self.store.prune(max_size=self.max_size):
            self.reporter.warn(f"store over {self.max_size} bytes: removed {entry.key[:19]} ({entry.target})")

    def has(self, key: str) -> bool:
        entry = self.store.get(key)
        if entry is not None:
            self.store.touch(entry)
        return entry is not None

    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        return self.store.lock(key, on_wait)

    def fetch(self, key: str, ref: str, target: str) -> Found | None:
        entry = self.store.get(key)
        if entry is None:
            return None
        stored = f"{entry.stored_bytes / 1e6:.0f} MB"
        self.reporter.step(
            target, f"loading from the store ({stored} stored, {entry.image_bytes / 1e6:.0f} MB to load)"
        )
        from .plan import ForeignArchive

        self.store.touch(entry)  # in use: the least recently used entries a prune takes are others
        try:
            stream = self.store.load_stream(entry, self.loaded)
            loaded = self.engine.load(self._counted(stream, "load", entry.image_bytes))
        except CorruptEntry as exc:
            self.reporter.warn(f"{target}: {exc}; rebuilding")
            return None
        except ForeignArchive as exc:
            self.store.remove(key)
            self.reporter.warn(
                f"{target}: the store's entry is not one image ({exc}); entry removed, rebuilding"
            )
            return None
        except CommandError as exc:  # e.g. a base layer gone from the daemon since the key was computed
            self.failed_loads.add(key)
            self.reporter.warn(f"{target}: docker load failed ({exc}); rebuilding")
            return None
        except OSError as exc:  # a blob the store cannot read (permissions, I/O error)
            self.reporter.warn(f"{target}: the store's entry could not be read ({exc}); rebuilding")
            return None
        # Loads carry no names (plan.py): the image is found by the ID its record gives, then tagged
        # with the name this checkout asks for, whatever repository the entry was saved from.
        info = self.engine.image_inspect(entry.image_id)
        said = _loaded_id(loaded)
        # The record names the image; the image must also be the key's (its label, set by the build)
        # and what this load brought (when docker load says): a record naming another image in the
        # daemon, a base image say, is no hit.
        if (
            info is None
            or info.id != entry.image_id
            or info.labels.get(KEY_LABEL) != key
            or (said is not None and said != entry.image_id)
        ):
            self.store.remove(key)
            self.reporter.warn(f"{target}: the store's entry did not hold {ref}; entry removed, rebuilding")
            return None
        self.engine.tag(info.id, ref)
        self.store.touch(entry)
        self.loaded.append(info.layers)
        return Found(info.id, (*info.repo_tags, ref))

    def publish(self, item: Publish) -> bool:
        return self.publish_many([item]) == 1

    def publish_many(self, items: Sequence[Publish], cancelled: Callable[[], bool] = lambda: False) -> int:
        """Keep the daemon's images of ``items`` (one ``docker save`` for all: a layer they share is
        read once); the caller holds each key's lock. How many were kept; a warning says why not."""
        from .blobs import BadBlob
        from .plan import Cancelled, ForeignArchive, Resave

        names = ", ".join(dict.fromkeys(i.target for i in items))
        wanted = [
            {"key": i.key, "ref": i.ref, "target": i.target, "repository": i.repository,
             "image_id": i.image_id, "manifest_sha256": hashlib.sha256(canonical(i.manifest)).hexdigest()}
            for i in items
        ]  # fmt: skip
        bases = [i.base_layers for i in items]
        refs = [i.ref for i in items]
        start = time.monotonic()
        self.last_cancelled = False
        entries: list[Entry] = []
        try:
            try:
                with self.engine.save_stream(refs) as stream:
                    entries = self.store.put_images(stream, wanted, bases, cancelled)
            except Resave:  # a base layer is needed further up after all: keep every layer
                with self.engine.save_stream(refs) as stream:
                    entries = self.store.put_images(stream, wanted, [[] for _ in items], cancelled)
        except Cancelled:
            self.last_cancelled = True
            return 0
        except CommandError as exc:
            if not entries:
                self.reporter.warn(f"{names}: not stored: {exc}")
                return 0
            # The records were written: every file their images need was read and checked by its
            # digest; docker save's exit status only says that it did not end its stream cleanly.
        except (StoreError, OSError, ValueError, KeyError, ForeignArchive, BadBlob) as exc:
            self.reporter.warn(f"{names}: not stored: {exc}")
            return 0
        self.failed_loads.difference_update(i.key for i in items)
        added = sum(e.new_bytes for e in entries)
        self.last_saved = Saved(
            len(entries), added, sum(e.image_bytes for e in entries), time.monotonic() - start
        )
        self._keep_within_limit()
        return len(entries)

    def _counted(self, chunks: Iterator[bytes], label: str, total: int | None) -> Iterator[bytes]:
        done = 0
        for chunk in chunks:
            done += len(chunk)
            self.reporter.transfer(label, done, total)
            yield chunk
        self.reporter.transfer(label, total or done, total or done)


class Saved(NamedTuple):
    """What the last save stored: entries, bytes new to the store, bytes of the images, seconds."""

    entries: int
    new_bytes: int
    image_bytes: int
    seconds: float


def _loaded_id(output: str) -> str | None:
    """The image ID ``docker load`` reports for an image without names (``Loaded image ID: sha256:…``)."""
    for line in output.splitlines():
        if line.startswith("Loaded image ID: "):
            return line.removeprefix("Loaded image ID: ").strip()
    return None
