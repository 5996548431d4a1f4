"""The directory store as an image tier: a hit streams the archive into ``docker load``; publishing
saves the daemon's image, thinned of its base layers, into a new entry."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from ..engine.base import Engine
from ..errors import CommandError, StoreError
from ..key.digest import canonical
from ..progress import Reporter
from ..refs import KEY_LABEL
from .directory import CorruptEntry, DirectoryStore
from .tiers import Found, Publish


class DirectoryTier:
    """A :class:`DirectoryStore` (a CI cache directory, or the user's cache) as the tier after the daemon."""

    name = "store"
    writable = True

    def __init__(
        self, store: DirectoryStore, engine: Engine, reporter: Reporter, max_size: int | None = None
    ) -> None:
        self.store = store
        self.engine = engine
        self.reporter = reporter
        self.max_size = max_size  # ``store-max-size``: pruned to it after every save, by any command

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
        self.reporter.step(target, f"loading from the store ({entry.archive_bytes / 1e6:.0f} MB)")
        from . import archive

        try:
            with self.store.open_archive(entry) as chunks:
                loaded = self.engine.load(archive.unnamed(self._counted(chunks, "load", entry.image_bytes)))
        except CorruptEntry as exc:
            self.reporter.warn(f"{target}: {exc}; rebuilding")
            return None
        except archive.ForeignArchive as exc:
            self.store.remove(key)
            self.reporter.warn(
                f"{target}: the store's archive is not one image ({exc}); entry removed, rebuilding"
            )
            return None
        except CommandError as exc:  # e.g. a base layer gone from the daemon since the key was computed
            self.reporter.warn(f"{target}: docker load failed ({exc}); rebuilding")
            return None
        # Archives carry no names (archive.py): the image is found by the ID its record gives, then
        # tagged with the name this checkout asks for, whatever repository the entry was saved from.
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
            # An archive from before names were stripped may have tagged what it holds with the key's
            # tag (the daemon tier had missed it): untag it, or the next look would take it for the key's.
            self.engine.remove_image(ref)
            self.store.remove(key)
            self.reporter.warn(f"{target}: the store's archive did not hold {ref}; entry removed, rebuilding")
            return None
        self.engine.tag(info.id, ref)
        self.store.touch(entry)
        return Found(info.id, (*info.repo_tags, ref))

    def publish(self, item: Publish) -> bool:
        self.reporter.step(item.target, "saving into the store")
        import tarfile  # only a save needs it

        from . import archive

        shared = {"shared_layers": 0, "layers": 0}

        def feed(sink: Callable[[bytes], None]) -> int:
            done = 0

            def counted(data: bytes) -> None:
                nonlocal done
                done += len(data)
                sink(data)
                self.reporter.transfer("save", done, None)

            # Layers of the base images are in every daemon that can compute this key: keep them out.
            thin = archive.write_thin(saved, counted, item.base_layers)
            shared.update(shared_layers=thin.shared_layers, layers=thin.layers)
            self.reporter.transfer("save", thin.bytes, thin.bytes)
            return thin.bytes

        manifest_digest = hashlib.sha256(canonical(item.manifest)).hexdigest()
        saved = self.store.temp_path(item.key, "tar")
        try:
            self.engine.save_file(item.ref, saved)
            self.store.put(item.key, feed, target=item.target, repository=item.repository,
                           image_id=item.image_id, manifest_sha256=manifest_digest, extra=shared)  # fmt: skip
        except (StoreError, CommandError, OSError, ValueError, KeyError, tarfile.TarError) as exc:
            self.reporter.warn(f"{item.target}: not stored: {exc}")
            return False
        finally:
            saved.unlink(missing_ok=True)
        self._keep_within_limit()
        return True

    def _counted(self, chunks: Iterator[bytes], label: str, total: int | None) -> Iterator[bytes]:
        done = 0
        for chunk in chunks:
            done += len(chunk)
            self.reporter.transfer(label, done, total)
            yield chunk
        self.reporter.transfer(label, total or done, total or done)


def _loaded_id(output: str) -> str | None:
    """The image ID ``docker load`` reports for an image without names (``Loaded image ID: sha256:…``)."""
    for line in output.splitlines():
        if line.startswith("Loaded image ID: "):
            return line.removeprefix("Loaded image ID: ").strip()
    return None
