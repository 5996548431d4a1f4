"""Image tiers: the places a key's image can be found, fastest first.

The daemon is the first tier (a hit there costs a retag); the directory store the next (a hit costs a
load); an OCI registry shared by many machines will be a third. :class:`~stagecache.build.Resolver`
is a loop over them: fetch from the first tier that has the key, back-fill the writable tiers that
lack it, else lock the key in every tier, build, and publish to every writable tier.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, Protocol


class Found(NamedTuple):
    """A key's image, now in the daemon."""

    image_id: str
    repo_tags: tuple[str, ...] = ()  # the tags it already has (applying one of them again is skipped)


class Publish(NamedTuple):
    """What a tier needs to keep the daemon's image of a key."""

    key: str
    ref: str  # the key tag, <repository>:sc-<hex>
    target: str
    repository: str
    image_id: str
    manifest: dict[str, Any]  # the public input manifest
    base_layers: Sequence[Sequence[str]]  # diff IDs of the base images (every daemon has them)


class ImageTier(Protocol):
    """One place images are kept."""

    @property
    def name(self) -> str:
        """The outcome a hit here is reported as: ``daemon``, ``store``."""
        ...

    @property
    def writable(self) -> bool:
        """Whether :meth:`publish` keeps anything (the daemon gets its images by builds and fetches)."""
        ...

    def has(self, key: str) -> bool:
        """Whether the key is here; a use is recorded (least recently used pruning)."""
        ...

    def fetch(self, key: str, ref: str, target: str) -> Found | None:
        """Bring the key's image into the daemon, tagged ``ref``; None when this tier cannot (absent, or
        damaged: then it is removed here and a warning says so)."""
        ...

    def publish(self, item: Publish) -> bool:
        """Keep the daemon's image of ``item.key``; the caller holds this tier's lock of the key.
        False (with a warning) when it could not: the build is still good, only not kept here."""
        ...

    def lock(self, key: str, on_wait: Callable[[], None] | None = None) -> AbstractContextManager[None]:
        """Hold the key: one builder or writer at a time. ``on_wait`` is called once if it is busy."""
        ...
