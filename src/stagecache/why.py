"""Why a target would miss: its key now against the key and manifest of its last recorded build."""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from .refs import target_id

if TYPE_CHECKING:
    from .build import Resolver
    from .key.digest import Changes
    from .project.settings import Target
    from .store.records import Records


class Why(NamedTuple):
    target: str
    key: str  # the key now
    last_key: str | None  # the key of the last recorded build; None: no build recorded
    recorded: float | None  # when that build was recorded (seconds since the epoch)
    changes: Changes | None  # what differs; None when nothing to compare or nothing changed

    @property
    def state(self) -> str:
        """``no record``, ``unchanged`` or ``changed``."""
        if self.last_key is None:
            return "no record"
        return "unchanged" if self.last_key == self.key else "changed"


def why(resolver: Resolver, records: Records, target: Target) -> Why:
    """Compute ``target``'s key and compare its manifest with the one its last build recorded."""
    key, found = resolver.key(target)
    last = records.last_build(target_id(target.repository, target.name))
    if last is None:
        return Why(target.name, key, None, None, None)
    last_key = str(last.get("key"))
    recorded = last.get("recorded")
    when = float(recorded) if isinstance(recorded, (int, float)) else None
    if last_key == key:
        return Why(target.name, key, last_key, when, None)
    from .key.digest import diff

    return Why(target.name, key, last_key, when, diff(last.get("manifest", {}), found.public))
