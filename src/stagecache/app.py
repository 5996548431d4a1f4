"""The composition root: the command line's options become settings, and the parts are wired here.

Everything that decides *which* engine, store tiers, records and key caches a command works with is
in this module, so that the use cases (``build``, ``testrun``, ``checkprod``) only receive them and the
CLI only asks for them. Tests wire their own (a fake engine, a store in a temp directory).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from .key.spec import DEFAULT_SECRET_PATTERNS
from .progress import Reporter, Silent
from .project.load import load
from .project.pyproject import read_tool_table
from .project.settings import Options, Settings, cache_dir, store_location

if TYPE_CHECKING:
    from .build import Resolver
    from .engine.base import Engine
    from .store.directory import DirectoryStore
    from .store.records import Records
    from .store.tiers import ImageTier


class App:
    """One project, as one command sees it: its settings, its engine, its store and records."""

    def __init__(self, settings: Settings, engine: Engine, reporter: Reporter | None = None) -> None:
        self.settings = settings
        self.engine = engine
        self.reporter: Reporter = reporter or Silent()
        self._store: DirectoryStore | None = None
        self._saving: list[ImageTier] = []  # tiers whose saves run in the background (close() waits)

    @classmethod
    def load(cls, opts: Options, engine: Engine, reporter: Reporter | None = None) -> App:
        """Read the project (compose through the engine's compose, then ``[tool.stagecache]``)."""
        return cls(load(opts, engine), engine, reporter)

    def store(self) -> DirectoryStore:
        """The directory store, created and cleaned of killed writers' leftovers on first use."""
        if self._store is None:
            self._store = open_store(self.settings.root, self.settings.store)
        return self._store

    def records(self) -> Records:
        """Build records (for ``key --why``) and test passes (for ``test --skip-passed``)."""
        from .store.records import Records

        return Records(self.store().records_dir)

    def resolver(self, *, use_store: bool = True) -> Resolver:
        """Images through the tiers: the daemon, then (with ``use_store``) the store; records kept.
        Saves into the store run beside the command; :meth:`close` waits for them."""
        resolver = resolver_for(
            self.engine,
            self.store() if use_store else None,
            reporter=self.reporter,
            secret_patterns=self.settings.secret_patterns,
            digest_cache_dir=cache_dir() / "digests",
            watch_dir=cache_dir() / "watch",
            start_watchers=self.settings.tool.get("watch") is True,
            redaction_key=self.redaction_key(),
            store_max_size=self.settings.store_max_size,
            background=True,
            save=self.settings.saves(),
        )
        self._saving += [tier for tier in resolver.tiers if hasattr(tier, "finish")]
        return resolver

    def close(self, *, cancel: bool = False) -> None:
        """Wait for the saves into the store to end (``cancel``: stop them between two blobs)."""
        for tier in self._saving:
            tier.finish(cancel=cancel)  # type: ignore[attr-defined]
        self._saving = []

    def redaction_key(self) -> Callable[[], bytes]:
        """The HMAC key of secret build args: the store's, also for a command that does not use the
        store (``key``, ``--no-store``), so that every command shows and counts them alike."""
        from .redaction import RedactionKey

        return RedactionKey(self.settings.store, cache_dir())


def resolver_for(
    engine: Engine,
    store: DirectoryStore | None = None,
    *,
    reporter: Reporter | None = None,
    secret_patterns: Sequence[str] = DEFAULT_SECRET_PATTERNS,
    digest_cache_dir: Path | None = None,
    watch_dir: Path | None = None,
    start_watchers: bool = False,
    redaction_key: Callable[[], bytes] | None = None,
    store_max_size: int | None = None,
    background: bool = False,
    save: bool = True,
) -> Resolver:
    """A resolver over the daemon and, given one, a directory store (whose records it keeps too).
    Without ``digest_cache_dir`` file digests are not remembered; without ``watch_dir`` no watcher
    is asked; without ``redaction_key``, secret build args are digested under a key of this process's.
    With ``background``, saves into the store run in a thread (the tier's ``finish()`` waits for them);
    without ``save``, the store is read only."""
    from .build import Resolver
    from .keying import Keyer
    from .store.daemon import DaemonTier
    from .store.local import DirectoryTier
    from .store.records import Records

    reporter = reporter or Silent()
    keyer = Keyer(
        engine,
        reporter=reporter,
        secret_patterns=secret_patterns,
        digest_cache_dir=digest_cache_dir,
        watch_dir=watch_dir,
        start_watchers=start_watchers,
        redaction_key=redaction_key,
    )
    tiers: list[ImageTier] = [DaemonTier(engine)]
    records = None
    if store is not None:
        store.ensure()
        local = DirectoryTier(store, engine, reporter, store_max_size, writable=save)
        if background:
            from .store.background import BackgroundTier

            tiers.append(BackgroundTier(local, reporter))
        else:
            tiers.append(local)
        records = Records(store.records_dir)
    return Resolver(engine, tiers, keyer, records=records, reporter=reporter)


def open_store(root: Path, location: Path | None) -> DirectoryStore:
    from .store.directory import DirectoryStore

    store = DirectoryStore(location or store_location(root, None, read_tool_table(root)))
    store.ensure()
    return store


def store_for(project_dir: Path, given: str | None) -> DirectoryStore:
    """The store a project uses, for commands that need no engine (``store ls|prune|verify``)."""
    root = project_dir.resolve()
    return open_store(root, store_location(root, given, read_tool_table(root)))
