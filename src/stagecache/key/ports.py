"""What the key core needs from outside, as Protocols: image identities, file digests, a file-row memo.

The key is a pure function of a target's inputs. Finding an external image's identity needs the
engine; remembering file digests and skipping the walk are speed-ups that live in
:mod:`stagecache.speed`. The key core asks for them through these ports, and imports neither.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from .ignore import IgnoreRules
from .walk import Entry


class ImageIdentity(Protocol):
    """External images (``FROM python:3.11-slim``) as the engine knows them."""

    def image_id(self, ref: str) -> str:
        """The image's identity (its ID in the engine)."""
        ...

    def onbuild(self, ref: str) -> bool:
        """Whether the image has ONBUILD triggers (they run in the build and may copy anything)."""
        ...

    def env(self, ref: str) -> Sequence[str] | None:
        """The image's ``ENV`` (``NAME=value`` items), which its stages' words can read; None: unknown."""
        ...

    def image_store(self) -> str:
        """The kind of image store the engine has (``classic``, ``containerd``): asked only of targets
        built from scratch, whose key names no external image to tell the stores apart."""
        ...


class FileDigests(Protocol):
    """Content digests of context files (:func:`stagecache.key.files.file_digest`), however obtained."""

    @property
    def changed(self) -> bool:
        """Whether anything new was learned (a cache then writes itself, forgetting deleted files)."""
        ...

    def digests(self, files: Sequence[tuple[str, bytes | None]]) -> dict[str, str]:
        """``{relpath: digest}``; each file with its stat signature, or None to stat it."""
        ...

    def retain(self, paths: Iterable[str]) -> None:
        """Forget every file not in ``paths`` (the context no longer has it)."""
        ...


class MemoRows(Protocol):
    """The part of a memo that becomes a manifest."""

    @property
    def files(self) -> list[list[Any]]: ...
    @property
    def warnings(self) -> list[str]: ...
    @property
    def uncacheable(self) -> list[str]: ...


class RowMemo(Protocol):
    """File rows remembered from an earlier walk, reusable while nothing that matters changed."""

    def reuse(self, key: str, rules: IgnoreRules) -> MemoRows | None:
        """The rows remembered under ``key`` if they still hold; None: walk."""
        ...

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
        """Keep what a full walk gave, under ``key``."""
        ...
