"""Keys as a command computes them: the pure key core wired to the engine and the speed caches.

:class:`Keyer` is the key core's :class:`~stagecache.key.ports.ImageIdentity` (base images asked of
the engine once, pulled when absent), and it opens each context's digest cache and, where one is
wanted, its watcher, as the core's :class:`~stagecache.key.ports.FileDigests` and
:class:`~stagecache.key.ports.RowMemo`.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from . import redaction
from .engine.base import Engine, ImageInfo
from .errors import ConfigError
from .key import digest
from .key.inputs import Inputs, collect
from .key.proxies import cli_build_args
from .key.spec import DEFAULT_SECRET_PATTERNS, secret_arg
from .key.words import Frontend, frontend_for
from .progress import Reporter, Silent
from .project.settings import Target
from .speed import watch
from .speed.digests import DigestCache


class Keyer:
    """Computes targets' keys; remembers what it asked the engine for the length of one command."""

    def __init__(
        self,
        engine: Engine,
        *,
        reporter: Reporter | None = None,
        secret_patterns: Sequence[str] = DEFAULT_SECRET_PATTERNS,
        digest_cache_dir: Path | None = None,
        watch_dir: Path | None = None,
        start_watchers: bool = False,
        redaction_key: Callable[[], bytes] | None = None,
    ) -> None:
        self.engine = engine
        self.reporter: Reporter = reporter or Silent()
        self.secret_patterns = secret_patterns
        redaction.use_patterns(secret_patterns)  # what -v and error messages mask
        # The HMAC key of secret build args (:class:`stagecache.redaction.RedactionKey`: the store's);
        # None: a key of this process's own (keys with secret args then hold for this process only).
        self.redaction_key = redaction_key
        self.digest_cache_dir = digest_cache_dir  # None: file digests are not remembered between runs
        self.watch_dir = watch_dir  # where context watchers answer (None: do not ask them)
        self.start_watchers = start_watchers  # start one for a context that has none
        self._images: dict[str, ImageInfo] = {}  # external images asked about, by reference

    # --- the ImageIdentity port ---------------------------------------------------------------------
    def image(self, ref: str) -> ImageInfo:
        """An external image as the engine has it (pulled first if absent)."""
        if ref not in self._images:
            info = self.engine.image_inspect(ref)
            if info is None:
                self.reporter.warn(f"base image {ref} is not in the Docker engine; pulling it")
                done = self.engine.pull(ref)
                info = self.engine.image_inspect(ref) if done.returncode == 0 else None
                if info is None:
                    detail = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "pull failed"
                    raise ConfigError(
                        f"base image {ref!r} is not available ({detail}): pull or build it first"
                    )
            self._images[ref] = info
        return self._images[ref]

    def forget_images(self) -> None:
        """Ask the engine about external images again from now on (they may have been re-pulled)."""
        self._images.clear()

    def image_id(self, ref: str) -> str:
        return self.image(ref).id

    def onbuild(self, ref: str) -> bool:
        return bool(self.image(ref).onbuild)

    def env(self, ref: str) -> tuple[str, ...]:
        return self.image(ref).env

    def image_store(self) -> str:
        return self.engine.image_store()

    def base_layers(self, refs: Iterable[str]) -> list[tuple[str, ...]]:
        """The layers of the external images a key named (they are in every daemon that computed it)."""
        return [self._images[r].layers for r in refs if r in self._images]

    # --- keys ---------------------------------------------------------------------------------------
    def platform(self) -> str:
        return self.engine.engine().platform

    def frontend(self) -> Frontend:
        """How the engine's built-in Dockerfile frontend reads words (by the engine's version)."""
        return frontend_for(self.engine.engine().version)

    def inputs(self, target: Target) -> Inputs:
        for name, value in target.spec.build_args.items():
            if secret_arg(name, value, self.secret_patterns):
                redaction.remember(value)  # never printed from here on
        cache = memo = None
        if self.digest_cache_dir is not None:
            where = hashlib.sha256(str(target.spec.context.resolve()).encode()).hexdigest()[:32]
            cache = DigestCache.open(target.spec.context, self.digest_cache_dir / f"{where}.marshal")
            socket = watch.socket_path(self.watch_dir, target.spec.context) if self.watch_dir else None
            if socket is not None and watch.enabled():
                memos = self.digest_cache_dir / f"{where}.memos"
                memo = watch.ContextWatch(target.spec.context, socket, memos, autostart=self.start_watchers)
        try:
            return collect(
                target.spec,
                images=self,
                platform=self.platform(),
                digests=cache,
                secret_patterns=self.secret_patterns,
                memo=memo,
                salt=self.redaction_key,
                cli_build_args=self.cli_build_args(),
                frontend=self.frontend(),
            )
        finally:
            if cache is not None:
                cache.save()

    def cli_build_args(self) -> dict[str, str]:
        """The build args the docker CLI adds on its own (its config's proxies)."""
        return cli_build_args(os.environ, Path.home())

    def build_args(self, target: Target) -> dict[str, str]:
        """The build args BuildKit gets for a target, as the key reads them: the CLI's, then the target's."""
        spec_args = target.spec.build_args
        return {**{k: v for k, v in self.cli_build_args().items() if k not in spec_args}, **spec_args}

    def key(self, target: Target) -> tuple[str, Inputs]:
        found = self.inputs(target)
        return digest.compute(found), found
