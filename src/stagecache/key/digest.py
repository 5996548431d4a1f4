"""The key of a target: the digest of its input manifest, and what changed between two manifests."""

from __future__ import annotations

import hashlib
import json
from itertools import chain
from typing import Any

from .inputs import Inputs


def canonical(data: Any) -> bytes:
    # surrogateescape: a file name that is not UTF-8 comes back as the bytes it was read from
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogateescape"
    )


def compute(inputs: Inputs) -> str:
    """``sha256:<hex>`` over the manifest; secret args count through their full digests.

    The digest covers the canonical JSON of the manifest without its file rows, a NUL byte, then the
    four fields of every file row, NUL-separated. Neither JSON (which escapes control characters) nor a
    path or link target can contain a NUL, so the encoding is unambiguous; for 20,000 files it costs a
    third of encoding the rows as JSON.
    """
    hashed = dict(inputs.public)
    rows = hashed.pop("files")
    if inputs.secret_digests:
        hashed["args"] = {
            **inputs.public["args"],
            **{k: "sha256:" + v for k, v in inputs.secret_digests.items()},
        }
    digest = hashlib.sha256(canonical(hashed))
    digest.update(b"\0")
    digest.update("\0".join(chain.from_iterable(rows)).encode("utf-8", "surrogateescape"))
    return "sha256:" + digest.hexdigest()


class Changes:
    """What differs between the manifest of an earlier build and the current one."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.removed: list[str] = []
        self.modified: list[str] = []
        self.other: list[str] = []

    def empty(self) -> bool:
        return not (self.added or self.removed or self.modified or self.other)

    def lines(self) -> list[str]:
        out = [f"+ {p}" for p in self.added]
        out += [f"- {p}" for p in self.removed]
        out += [f"~ {p}" for p in self.modified]
        out += self.other
        return out


def diff(old: dict[str, Any], new: dict[str, Any]) -> Changes:
    changes = Changes()
    if old.get("schema") != new.get("schema"):  # other digests, other rows: a file diff would list all
        changes.other.append(
            f"key schema {old.get('schema')!r} -> {new.get('schema')!r}: this stagecache computes keys "
            "differently from the one that recorded the last build, so every target builds once"
        )
        return changes
    old_files = {row[0]: row[1:] for row in old.get("files", [])}
    new_files = {row[0]: row[1:] for row in new.get("files", [])}
    changes.added = sorted(new_files.keys() - old_files.keys())
    changes.removed = sorted(old_files.keys() - new_files.keys())
    for path in sorted(old_files.keys() & new_files.keys()):
        before, after = old_files[path], new_files[path]
        if before != after:
            what = []
            if before[0] != after[0]:
                what.append(f"{before[0]} -> {after[0]}")
            if before[1] != after[1]:
                what.append(f"mode {before[1]} -> {after[1]}")
            if before[2] != after[2] and before[0] == after[0]:
                what.append("content" if after[0] == "file" else f"target {before[2]!r} -> {after[2]!r}")
            changes.modified.append(f"{path} ({', '.join(what)})")
    for name in sorted(set(old.get("args", {})) | set(new.get("args", {}))):
        before, after = old.get("args", {}).get(name), new.get("args", {}).get(name)
        if before != after:
            changes.other.append(f"build arg {name}: {before!r} -> {after!r}")
    for ref in sorted(set(old.get("images", {})) | set(new.get("images", {}))):
        before, after = old.get("images", {}).get(ref), new.get("images", {}).get(ref)
        if before != after:
            changes.other.append(f"base image {ref}: {_short(before)} -> {_short(after)}")
    old_stages = {s["name"]: s for s in old.get("stages", [])}
    new_stages = {s["name"]: s for s in new.get("stages", [])}
    for name in sorted(set(old_stages) | set(new_stages), key=str):
        before_stage, after_stage = old_stages.get(name), new_stages.get(name)
        if before_stage is None:
            changes.other.append(f"stage {name}: now part of the target")
        elif after_stage is None:
            changes.other.append(f"stage {name}: no longer part of the target")
        elif before_stage != after_stage:
            changes.other.append(f"stage {name}: instructions changed")
    for field_ in ("platform", "target", "global_args", "secrets"):
        if old.get(field_) != new.get(field_):
            changes.other.append(f"{field_.replace('_', ' ')}: {old.get(field_)!r} -> {new.get(field_)!r}")
    for group, shown in (("build_options", "compose build.{}"), ("labels", "label {}")):
        olds, news = old.get(group) or {}, new.get(group) or {}
        for name in sorted(set(olds) | set(news)):
            if olds.get(name) != news.get(name):
                changes.other.append(f"{shown.format(name)}: {olds.get(name)!r} -> {news.get(name)!r}")
    return changes


def _short(value: str | None) -> str:
    if value is None:
        return "(none)"
    return value[:19] if value.startswith("sha256:") else value
