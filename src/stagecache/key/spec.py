"""What a target is built from, as the user configured it, and which build args are secret."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

DEFAULT_SECRET_PATTERNS = ("*TOKEN*", "*PASSWORD*", "*SECRET*", "*KEY*")


class TargetSpec(NamedTuple):
    """What a target is built from, as the user configured it."""

    name: str
    context: Path
    dockerfile: Path
    stage: str | None = None
    build_args: Mapping[str, str] = MappingProxyType({})
    platform: str | None = None
    labels: Mapping[str, str] = MappingProxyType({})  # compose `build.labels`, set on the image


def is_secret(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern.upper()) for pattern in patterns)
