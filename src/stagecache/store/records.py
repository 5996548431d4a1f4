"""Records beside the image archives: the manifest of each target's last build (``key --why``) and the
test runs that passed (``test --skip-passed``).

They live in the store's directory (``targets/``, ``passes/``) but are not image archives: a store
tier's entries can be pruned, verified or moved to a registry without them.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

from .files import atomic_write, flocked, key_hex


class Records:
    def __init__(self, base: Path) -> None:
        self.base = base  # the store's format directory (``<store>/v1``)

    def _dir(self, name: str, *, create: bool = False) -> Path:
        path = self.base / name
        if create:
            path.mkdir(parents=True, exist_ok=True)
        return path

    def _target_path(self, target_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", target_id)
        return self._dir("targets") / f"{safe}.json"

    def record_build(self, target_id: str, key: str, manifest: dict[str, Any]) -> None:
        """Keep a target's manifest, and beside it its key alone: a hit reads only the key (a large
        context's manifest is megabytes of JSON). The key file goes first and comes back last, under
        the target's lock, so it never names a manifest that is not there."""
        self._dir("targets", create=True)
        manifest_path = self._target_path(target_id)
        key_path = manifest_path.with_suffix(".key")
        data = {"target": target_id, "key": key, "recorded": time.time(), "manifest": manifest}
        with flocked(manifest_path.with_suffix(".lock")):
            key_path.unlink(missing_ok=True)
            atomic_write(manifest_path, json.dumps(data, sort_keys=True).encode())
            atomic_write(key_path, key.encode())

    def last_build_key(self, target_id: str) -> str | None:
        """The key of the manifest :meth:`record_build` kept for a target, without reading it."""
        try:
            return self._target_path(target_id).with_suffix(".key").read_text()
        except (OSError, UnicodeDecodeError):
            return None

    def last_build(self, target_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._target_path(target_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def record_pass(self, fingerprint: str, info: dict[str, Any]) -> None:
        atomic_write(
            self._dir("passes", create=True) / f"{key_hex(fingerprint)}.json",
            json.dumps(info, sort_keys=True).encode(),
        )

    def passed(self, fingerprint: str) -> dict[str, Any] | None:
        try:
            data = json.loads((self._dir("passes") / f"{key_hex(fingerprint)}.json").read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None
