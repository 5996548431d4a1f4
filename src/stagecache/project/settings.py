"""A project's settings: the compose file, then ``[tool.stagecache]``, then flags.

What compose has no words for (the store, its limits, default targets) comes from
``[tool.stagecache]`` in ``pyproject.toml``. Command-line flags override both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..key.spec import DEFAULT_SECRET_PATTERNS, TargetSpec


class Target(NamedTuple):
    """A buildable target: its inputs (``spec``) and the names the resulting image gets."""

    spec: TargetSpec
    repository: str  # where key tags live: "<repository>:sc-<hex>"
    image: str | None = None  # the compose image name, tagged after every build
    service: str | None = None

    @property
    def name(self) -> str:
        return self.spec.name


class Settings:
    """The project as configured: its targets, and where their images are stored."""

    def __init__(
        self, root: Path, targets: dict[str, Target], defaults: list[str], tool: dict[str, Any] | None = None
    ) -> None:
        self.root = root
        self.targets = targets
        self.defaults = defaults
        self.tool = tool or {}  # [tool.stagecache]
        self.store: Path | None = None
        self.store_max_size: int | None = None
        self.secret_patterns: tuple[str, ...] = DEFAULT_SECRET_PATTERNS
        self.compose_files: list[Path] = []
        self.compose_data: dict[str, Any] = {}

    def select(self, names: Sequence[str]) -> list[Target]:
        chosen = list(names) or self.defaults or list(self.targets)
        if not self.targets:
            raise ConfigError(
                f"no targets in {self.root}: add a compose file with `build:` services, "
                "or name a Dockerfile with -f/--file"
            )
        out = []
        for name in chosen:
            if name not in self.targets:
                raise ConfigError(f"unknown target {name!r}; targets: {', '.join(sorted(self.targets))}")
            out.append(self.targets[name])
        return out


class Options(NamedTuple):
    """What the command line says about the project (None: not given)."""

    project_dir: Path = Path()  # the working directory
    compose_files: Sequence[str] = ()
    dockerfile: str | None = None
    context: str | None = None
    build_args: Mapping[str, str] = MappingProxyType({})
    store: str | None = None
    repository: str | None = None


def cache_dir() -> Path:
    if override := os.environ.get("STAGECACHE_CACHE_DIR"):
        return Path(override)
    if sys.platform == "linux":  # the XDG rule, without platformdirs' 10 ms of imports on every run
        xdg = os.environ.get("XDG_CACHE_HOME", "")
        return (Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache") / "stagecache"
    import platformdirs

    return Path(platformdirs.user_cache_dir("stagecache"))


def store_location(root: Path, given: str | None, tool: Mapping[str, object]) -> Path:
    """``--store`` or ``STAGECACHE_STORE`` (relative to the working directory), else ``[tool.stagecache]
    store`` (relative to the project), else the user's cache directory."""
    chosen = given or os.environ.get("STAGECACHE_STORE")
    if chosen:
        return Path(os.path.expanduser(chosen)).resolve()
    if "store" in tool:
        return resolve_path(root, str(tool["store"]))
    return cache_dir() / "store"


def resolve_path(root: Path, value: str) -> Path:
    return (root / os.path.expanduser(os.path.expandvars(value))).resolve()
