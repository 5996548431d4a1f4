"""The record of one stored image, and the checks a record passes before anyone trusts it."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple


class Entry(NamedTuple):
    """The record of one stored image (``meta/<hex>.json``)."""

    key: str
    target: str
    repository: str
    image_id: str
    archive_sha256: str
    archive_bytes: int
    image_bytes: int
    manifest_sha256: str
    created: float
    last_used: float
    extra: dict[str, Any] = {}  # noqa: RUF012 -- never mutated: records are rewritten whole

    @property
    def hex(self) -> str:
        return self.key.removeprefix("sha256:")

    @classmethod
    def from_record(cls, data: object, key: str) -> Entry:
        """A record as read from ``meta/``, checked field by field: whoever can write the store could
        have written it. ValueError names what is wrong. Fields a later version adds are ignored."""
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("key") != key:
            raise ValueError(f"it names the key {data.get('key')!r}, not the one of its file name")
        for name, check in _CHECKS.items():
            if name not in data or not check(data[name]):
                raise ValueError(f"field {name!r} is missing or wrong ({data.get(name)!r})")
        if not isinstance(data.get("extra", {}), dict):
            raise ValueError("field 'extra' is not an object")
        return cls(**{name: data[name] for name in cls._fields if name in data})


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _time(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1e11


def _digest(value: object) -> bool:
    return isinstance(value, str) and re.fullmatch(r"(sha256:)?[0-9a-f]{64}", value) is not None


_CHECKS: dict[str, Callable[[object], bool]] = {
    "target": lambda v: isinstance(v, str),
    "repository": lambda v: isinstance(v, str),
    "image_id": _digest,
    "archive_sha256": _digest,
    "archive_bytes": _count,
    "image_bytes": _count,
    "manifest_sha256": _digest,
    "created": _time,
    "last_used": _time,
}
HEX = re.compile(r"[0-9a-f]{64}")  # a key, as the store names its files
