"""The Docker daemon as the first image tier, and the pruning of old key tags there.

A key's image is in the daemon when ``<repository>:sc-<key>`` exists and carries the key as its label:
a hit costs a retag at most. Each build of a new key leaves the previous key's image tagged; that
makes switching back to an old commit a retag, but they add up: :func:`prune_key_tags` keeps the
newest few per target and untags the rest (an image that other tags still name stays).
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

from ..engine.base import Engine, ImageInfo
from ..refs import KEY_LABEL, TARGET_LABEL, split_tag
from .tiers import Found, Publish


class DaemonTier:
    """Images in the engine itself. Nothing is published here: builds and fetches put images here."""

    name = "daemon"
    writable = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def _image(self, key: str, ref: str) -> ImageInfo | None:
        info = self.engine.image_inspect(ref)
        return info if info is not None and info.labels.get(KEY_LABEL) == key else None

    def has(self, key: str) -> bool:
        return False  # asked only of tiers to back-fill; the daemon is never back-filled

    def fetch(self, key: str, ref: str, target: str) -> Found | None:
        info = self._image(key, ref)
        return Found(info.id, info.repo_tags) if info is not None else None

    def publish(self, item: Publish) -> bool:
        return False

    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        return contextlib.nullcontext()


class Untagged(NamedTuple):
    ref: str
    target: str
    created: str
    removed: bool  # False: a dry run, or the engine refused (a container still uses it)

    def as_json(self) -> dict[str, object]:
        return self._asdict()


def prune_key_tags(
    docker: Engine, *, keep: int, dry_run: bool = False, repository: str | None = None
) -> list[Untagged]:
    """Untag all but the ``keep`` newest key tags of each (repository, target); only ``repository``'s
    when one is given."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for ref, info in docker.key_tagged():
        if repository is not None and split_tag(ref)[0] != repository:
            continue
        groups[(split_tag(ref)[0], info.labels.get(TARGET_LABEL, ""))].append((info.created, ref))
    out = []
    for (_, target), tagged in sorted(groups.items()):
        for created, ref in sorted(tagged, reverse=True)[keep:]:  # RFC 3339 times sort as text
            removed = not dry_run and docker.untag(ref)
            out.append(Untagged(ref, target, created, removed))
    return out
