"""Get the image of a target for its key: a daemon hit costs a retag, a store hit a load, a miss a build.

    daemon has <repository>:sc-<key>      -> tag it, done (no load, no save)
    store has the key                      -> stream the archive into `docker load`, checked as it goes
    otherwise                              -> BuildKit builds the target, the image is saved into the store

Builders of one key take the key's lock in the store, so a second process waits for the first and then
finds the image instead of building it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

from .engine.docker import LABEL_PREFIX, Docker, ImageInfo
from .errors import BuildError, CommandError, ConfigError, StoreError
from .key import digest as keys
from .key import inputs as inp
from .progress import Reporter, Silent
from .project.config import Target
from .speed import watch
from .speed.digests import DigestCache
from .store.directory import CorruptEntry, DirectoryStore

Outcome = Literal["daemon", "store", "built"]


class Result(NamedTuple):
    target: str
    key: str
    image: str  # the key tag, <repository>:sc-<hex>
    image_id: str
    outcome: Outcome
    seconds: float
    tags: list[str]
    cacheable: bool = True
    stored: bool = False

    def as_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "key": self.key,
            "image": self.image,
            "image_id": self.image_id,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "tags": self.tags,
            "cacheable": self.cacheable,
            "stored": self.stored,
        }


class Resolver:
    """Turns a target into an image: from the daemon, from the store, or by building it."""

    def __init__(
        self,
        docker: Docker,
        store: DirectoryStore | None,
        reporter: Reporter | None = None,
        secret_patterns: Sequence[str] = inp.DEFAULT_SECRET_PATTERNS,
        digest_cache_dir: Path | None = None,
        watch_dir: Path | None = None,
        start_watchers: bool = False,
    ) -> None:
        self.docker = docker
        self.store = store
        self.reporter: Reporter = reporter or Silent()
        self.secret_patterns = secret_patterns
        self.digest_cache_dir = digest_cache_dir  # None: file digests are not remembered between runs
        self.watch_dir = watch_dir  # where context watchers answer (None: do not ask them)
        self.start_watchers = start_watchers  # start one for a context that has none
        self._images: dict[str, ImageInfo] = {}  # external images asked about, by reference

    # --- keys -----------------------------------------------------------------------------------------
    def platform(self) -> str:
        return self.docker.engine().platform

    def image_id(self, ref: str) -> str:
        """The identity of an external image: its ID in the daemon (pulled first if absent)."""
        if ref not in self._images:
            info = self.docker.image_inspect(ref)
            if info is None:
                self.reporter.warn(f"base image {ref} is not in the Docker engine; pulling it")
                done = self.docker.pull(ref)
                info = self.docker.image_inspect(ref) if done.returncode == 0 else None
                if info is None:
                    detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pull failed"
                    raise ConfigError(
                        f"base image {ref!r} is not available ({detail}): pull or build it first"
                    )
            self._images[ref] = info
        return self._images[ref].id

    def inputs(self, target: Target) -> inp.Inputs:
        cache = watched = None
        if self.digest_cache_dir is not None:
            where = hashlib.sha256(str(target.spec.context.resolve()).encode()).hexdigest()[:32]
            cache = DigestCache.open(target.spec.context, self.digest_cache_dir / f"{where}.marshal")
            socket = watch.socket_path(self.watch_dir, target.spec.context) if self.watch_dir else None
            if socket is not None and watch.enabled():
                memos = self.digest_cache_dir / f"{where}.memos"
                watched = watch.ContextWatch(
                    target.spec.context, socket, memos, autostart=self.start_watchers
                )
        try:
            return inp.collect(
                target.spec,
                image_id=self.image_id,
                platform=self.platform(),
                digests=cache,
                secret_patterns=self.secret_patterns,
                onbuild=lambda ref: bool(ref in self._images and self._images[ref].onbuild),
                watched=watched,
            )
        finally:
            if cache is not None:
                cache.save()

    def key(self, target: Target) -> tuple[str, inp.Inputs]:
        found = self.inputs(target)
        return keys.compute(found), found

    # --- the main path --------------------------------------------------------------------------------
    def resolve(
        self,
        target: Target,
        *,
        tags: Sequence[str] | Callable[[], Sequence[str]] = (),
        rebuild: bool = False,
        save: bool = True,
        quiet_build: bool = False,
    ) -> Result:
        start = time.monotonic()
        key, found = self.key(target)
        ref = f"{target.repository}:{keys.tag_for(key)}"
        cacheable = not found.uncacheable
        for reason in found.uncacheable:
            self.reporter.warn(f"{target.name}: not cacheable, always built: {reason}")
        for warning in found.warnings:
            self.reporter.warn(f"{target.name}: {warning}")

        def finish(
            outcome: Outcome, image_id: str, stored: bool = False, present: Sequence[str] = ()
        ) -> Result:
            applied = self._apply_tags(image_id, tags() if callable(tags) else tags, present)
            if self.store is not None:
                self._record(target, key, found)
            return Result(target.name, key, ref, image_id, outcome, time.monotonic() - start, applied,
                          cacheable, stored)  # fmt: skip

        if cacheable and not rebuild:
            info = self._from_daemon(ref, key)
            if info is not None:
                entry = None
                if self.store is not None:
                    entry = self.store.get(key)
                    if entry is not None:
                        self.store.touch(entry)
                stored = save and entry is None and self._backfill(target, key, ref, info.id, found)
                return finish("daemon", info.id, stored, info.repo_tags)
            hit = self._from_store(target, key, ref)
            if hit is not None:
                return finish("store", hit)

        with self._locked(target, key, enabled=cacheable and self.store is not None):
            if cacheable and not rebuild:  # another process may have made it while we waited
                info = self._from_daemon(ref, key)
                if info is not None:
                    return finish("daemon", info.id, False, info.repo_tags)
                hit = self._from_store(target, key, ref)
                if hit is not None:
                    return finish("store", hit)
            image_id = self._build(target, key, ref, quiet_build)
            changed = cacheable and self._changed_during_build(target, key)
            stored = False
            if save and cacheable and not changed and self.store is not None:
                stored = self._save(target, key, ref, image_id, found)
            result = finish("built", image_id, stored)
            if changed:  # the image keeps the tags asked for, but not the key's: the next run builds again
                self.docker.remove_image(ref)
        return result

    # --- steps ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, target: Target, key: str, *, enabled: bool) -> Iterator[None]:
        if not enabled or self.store is None:
            yield
            return

        def waiting() -> None:
            self.reporter.step(target.name, "another process is building this key; waiting for it")

        with self.store.lock(key, on_wait=waiting):
            yield

    def _from_daemon(self, ref: str, key: str) -> ImageInfo | None:
        info = self.docker.image_inspect(ref)
        if info is None or info.labels.get(f"{LABEL_PREFIX}.key") != key:
            return None
        return info

    def _backfill(self, target: Target, key: str, ref: str, image_id: str, found: inp.Inputs) -> bool:
        """A daemon hit whose key the store lacks (a fresh CI cache, a save that was killed): save it once."""
        if self.store is None:
            return False
        with self.store.lock(key):
            if self.store.get(key) is not None:
                return False
            return self._save(target, key, ref, image_id, found)

    def _from_store(self, target: Target, key: str, ref: str) -> str | None:
        if self.store is None:
            return None
        entry = self.store.get(key)
        if entry is None:
            return None
        self.reporter.step(target.name, f"loading from the store ({entry.archive_bytes / 1e6:.0f} MB)")
        try:
            with self.store.open_archive(entry) as chunks:
                self.docker.load(self._counted(chunks, "load", entry.image_bytes))
        except CorruptEntry as exc:
            self.reporter.warn(f"{target.name}: {exc}; rebuilding")
            return None
        except CommandError as exc:  # e.g. a base layer gone from the daemon since the key was computed
            self.reporter.warn(f"{target.name}: docker load failed ({exc}); rebuilding")
            return None
        info = self.docker.image_inspect(ref)
        if info is None or info.id != entry.image_id:
            self.store.remove(key)
            self.reporter.warn(
                f"{target.name}: the store's archive did not hold {ref}; entry removed, rebuilding"
            )
            return None
        self.store.touch(entry)
        return info.id

    def _counted(self, chunks: Iterator[bytes], label: str, total: int | None) -> Iterator[bytes]:
        done = 0
        for chunk in chunks:
            done += len(chunk)
            self.reporter.transfer(label, done, total)
            yield chunk
        self.reporter.transfer(label, total or done, total or done)

    def _build(self, target: Target, key: str, ref: str, quiet: bool) -> str:
        self.reporter.step(target.name, "building with BuildKit")
        spec = target.spec
        labels = {**spec.labels, f"{LABEL_PREFIX}.key": key, f"{LABEL_PREFIX}.target": target.name}
        import tempfile  # only a build needs it

        with tempfile.TemporaryDirectory(prefix="stagecache-") as tmp:
            iidfile = Path(tmp) / "iid"
            done = self.docker.build(
                context=spec.context,
                dockerfile=spec.dockerfile,
                target=spec.stage,
                tags=[ref],
                build_args=spec.build_args,
                labels=labels,
                platform=spec.platform,
                quiet=quiet,
                iidfile=iidfile,
            )
            if done.returncode != 0:
                raise BuildError(target.name, done.stderr or "")
            try:
                return iidfile.read_text().strip()
            except OSError:
                raise BuildError(target.name, "docker buildx build wrote no image ID (--iidfile)") from None

    def _changed_during_build(self, target: Target, key: str) -> bool:
        """Whether the context changed while BuildKit read it (then the image may not match the key)."""
        again, _ = self.key(target)
        if again == key:
            return False
        self.reporter.warn(f"{target.name}: context changed during the build; image not kept under its key")
        return True

    def _save(self, target: Target, key: str, ref: str, image_id: str, found: inp.Inputs) -> bool:
        assert self.store is not None
        self.reporter.step(target.name, "saving into the store")
        from .store import archive  # tarfile: only a save needs it

        # Layers of the base images are in every daemon that can compute this key: keep them out.
        bases = [self._images[r].layers for r in found.public["images"] if r in self._images]
        shared = {"shared_layers": 0, "layers": 0}

        def feed(sink: Callable[[bytes], None]) -> int:
            done = 0

            def counted(data: bytes) -> None:
                nonlocal done
                done += len(data)
                sink(data)
                self.reporter.transfer("save", done, None)

            thin = archive.write_thin(saved, counted, bases)
            shared.update(shared_layers=thin.shared_layers, layers=thin.layers)
            self.reporter.transfer("save", thin.bytes, thin.bytes)
            return thin.bytes

        import tarfile  # only a save needs it

        manifest_digest = hashlib.sha256(keys.canonical(found.public)).hexdigest()
        saved = self.store.temp_path(key, "tar")
        try:
            self.docker.save_file(ref, saved)
            self.store.put(key, feed, target=target.name, repository=target.repository, image_id=image_id,
                           manifest_sha256=manifest_digest, extra=shared)  # fmt: skip
        except (StoreError, CommandError, OSError, ValueError, KeyError, tarfile.TarError) as exc:
            self.reporter.warn(f"{target.name}: not stored: {exc}")
            return False
        finally:
            saved.unlink(missing_ok=True)
        return True

    def _record(self, target: Target, key: str, found: inp.Inputs) -> None:
        """Keep the manifest of the target's current key, for `key --why`; written only when it changes."""
        assert self.store is not None
        if self.store.last_build_key(target_id(target)) == key:
            return
        try:
            self.store.record_build(target_id(target), key, found.public)
        except OSError as exc:
            self.reporter.warn(f"{target.name}: could not record the build's manifest: {exc}")

    def _apply_tags(self, image_id: str, tags: Sequence[str], present: Sequence[str] = ()) -> list[str]:
        """Point each tag at the image; tags that already do cost nothing (a hit is a retag at most)."""
        have = {_qualified(t) for t in present}
        for tag in tags:
            if _qualified(tag) not in have:
                self.docker.tag(image_id, tag)
        return list(tags)


def _qualified(ref: str) -> str:
    """``name`` and ``name:latest`` are one tag, as docker reads them."""
    last = ref.rsplit("/", 1)[-1]
    return ref if ":" in last or "@" in last else f"{ref}:latest"


def target_id(target: Target) -> str:
    return f"{target.repository}__{target.name}"
