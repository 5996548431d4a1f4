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
    manifest_digest: str  # the entry's OCI image manifest, a blob of the store
    stored_bytes: int  # bytes of the blobs it uses (shared ones included)
    new_bytes: int  # bytes of the blobs its save added to the store
    image_bytes: int  # bytes of the tar a load streams into the daemon
    manifest_sha256: str  # digest of the public input manifest (``key --why``)
    created: float
    last_used: float
    members: list[list[Any]]  # the load plan: [name, blob digest or "" or "inline:…", size, compressed]
    extra: dict[str, Any] = {}  # noqa: RUF012 -- never mutated: records are rewritten whole

    def blobs(self) -> set[str]:
        """The digests of the blobs this entry needs: its load plan's and its OCI manifest."""
        used = {m[1] for m in self.members if str(m[1]).startswith("sha256:")}
        return used | {self.manifest_digest}

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
    "manifest_digest": lambda v: isinstance(v, str) and v.startswith("sha256:") and _digest(v),
    "stored_bytes": _count,
    "new_bytes": _count,
    "image_bytes": _count,
    "members": lambda v: _members(v),
    "manifest_sha256": _digest,
    "created": _time,
    "last_used": _time,
}
INLINE = ("manifest.json", "index.json", "oci-layout")  # the only members kept in the record itself
NAME = re.compile(r"(?!/)(?!.*(^|/)\.\.?(/|$))[\w.+/-]{1,200}")


def _members(value: object) -> bool:
    """A load plan: members with safe relative names, each once, holding a blob, nothing (a base
    layer) or, for the files that name the image, their text; one ``manifest.json``."""
    if not isinstance(value, list) or not value:
        return False
    names = set()
    for item in value:
        if not (isinstance(item, list) and len(item) == 4):
            return False
        name, digest, size, compressed = item
        if not (isinstance(name, str) and NAME.fullmatch(name) and name not in names):
            return False
        names.add(name)
        if not (_count(size) and isinstance(compressed, bool) and isinstance(digest, str)):
            return False
        inline = digest.startswith("inline:")
        if inline != (name in INLINE) or not (
            inline or digest == "" or (digest.startswith("sha256:") and _digest(digest))
        ):
            return False
    return "manifest.json" in names


HEX = re.compile(r"[0-9a-f]{64}")  # a key, as the store names its files
