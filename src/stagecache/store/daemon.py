"""Old key tags in the daemon: each build of a new key leaves the previous key's image tagged
``<repository>:sc-<key>``. They make switching back to an old commit a retag, but they add up; this
keeps the newest few per target and untags the rest (an image that other tags still name stays)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..engine.docker import LABEL_PREFIX, Docker


@dataclass(frozen=True)
class Untagged:
    ref: str
    target: str
    created: str
    removed: bool  # False: a dry run, or the engine refused (a container still uses it)


def prune_key_tags(
    docker: Docker, *, keep: int, dry_run: bool = False, repository: str | None = None
) -> list[Untagged]:
    """Untag all but the ``keep`` newest key tags of each (repository, target); only ``repository``'s
    when one is given."""
    groups: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for ref, info, created in docker.key_tagged():
        if repository is not None and ref.rpartition(":")[0] != repository:
            continue
        groups[(ref.rpartition(":")[0], info.labels.get(f"{LABEL_PREFIX}.target", ""))].append((created, ref))
    out = []
    for (_, target), tagged in sorted(groups.items()):
        for created, ref in sorted(tagged, reverse=True)[keep:]:  # RFC 3339 times sort as text
            removed = not dry_run and docker.untag(ref)
            out.append(Untagged(ref, target, created, removed))
    return out
