"""What a target is built from, as the user configured it, and which build args are secret."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

DEFAULT_SECRET_PATTERNS = ("*TOKEN*", "*PASSWORD*", "*SECRET*", "*KEY*")


class BuildOptions(NamedTuple):
    """Compose ``build:`` options besides the context, Dockerfile, target, args and labels.

    The first five change what a ``RUN`` step sees (its hosts file, network, ``/dev/shm``, limits and
    what it is allowed to do), so they are in the key (:meth:`keyed`); the others decide how BuildKit
    uses or exports its cache and what it attests, not what the image holds.
    """

    extra_hosts: tuple[str, ...] = ()  # "host=ip", as compose lists them (sorted) (`--add-host`)
    network: str | None = None  # `--network` for RUN steps; None: the default
    shm_size: str | None = None  # bytes (`--shm-size`)
    ulimits: tuple[str, ...] = ()  # "name=soft:hard" (`--ulimit`)
    entitlements: tuple[str, ...] = ()  # `--allow` (`privileged: true` is security.insecure)
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    provenance: str | None = None
    sbom: str | None = None

    def keyed(self) -> dict[str, object]:
        """The options that can change the image, as they enter the key (only those that are set)."""
        values = {
            "extra_hosts": list(self.extra_hosts),
            "network": self.network,
            "shm_size": self.shm_size,
            "ulimits": list(self.ulimits),
            "entitlements": list(self.entitlements),
        }
        return {name: value for name, value in values.items() if value}


NO_OPTIONS = BuildOptions()


class TargetSpec(NamedTuple):
    """What a target is built from, as the user configured it."""

    name: str
    context: Path
    dockerfile: Path
    stage: str | None = None
    build_args: Mapping[str, str] = MappingProxyType({})
    platform: str | None = None
    labels: Mapping[str, str] = MappingProxyType({})  # compose `build.labels`, set on the image
    options: BuildOptions = NO_OPTIONS  # compose's other `build:` options


def is_secret(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern.upper()) for pattern in patterns)
