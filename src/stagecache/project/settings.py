"""Put a project's configuration together: compose file, then ``[tool.stagecache]``, then flags."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ..engine.docker import Docker
from ..errors import ConfigError
from ..key.inputs import DEFAULT_SECRET_PATTERNS
from ..store.directory import DirectoryStore
from . import config as cfg


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


def load(opts: Options, docker: Docker) -> cfg.Settings:
    root = opts.project_dir.resolve()
    if not root.is_dir():
        raise ConfigError(f"{opts.project_dir}: project directory not found")
    tool = cfg.read_tool_table(root)
    tool_args = {str(k): str(v) for k, v in tool.get("build-args", {}).items()}

    given_compose = list(opts.compose_files) or _as_list(tool.get("compose-file"))
    compose_files = [] if opts.dockerfile else cfg.find_compose_files(root, given_compose)
    settings = cfg.Settings(
        root=root, targets={}, defaults=[str(t) for t in tool.get("targets", [])], tool=tool
    )
    if compose_files:
        data = docker.compose_config(compose_files, root)
        settings.compose_files = compose_files
        settings.compose_data = data
        targets = cfg.targets_from_compose(data, compose_files[0])
    else:
        dockerfile = (
            _path(opts.dockerfile, Path.cwd()) or _path(tool.get("dockerfile"), root) or root / "Dockerfile"
        )
        context = _path(opts.context, Path.cwd()) or _path(tool.get("context"), root) or root
        if not context.is_dir():
            raise ConfigError(f"{context}: build context not found: check --context")
        if not dockerfile.is_file():
            raise ConfigError(f"{dockerfile}: no such Dockerfile: pass -f/--file or add a compose file")
        repository = opts.repository or tool.get("repository")
        targets, last = cfg.targets_from_dockerfile(root, dockerfile, context, repository)
        settings.defaults = settings.defaults or [last]
    settings.targets = {
        name: t._replace(
            spec=t.spec._replace(build_args={**tool_args, **t.spec.build_args, **opts.build_args}),
            repository=opts.repository or t.repository,
        )
        for name, t in targets.items()
    }
    settings.store = store_location(root, opts.store, tool)
    if "store-max-size" in tool:
        settings.store_max_size = cfg.parse_size(tool["store-max-size"], f"{root}/pyproject.toml")
    settings.secret_patterns = tuple(str(p) for p in tool.get("secret-args", DEFAULT_SECRET_PATTERNS))
    return settings


def store_location(root: Path, given: str | None, tool: Mapping[str, object]) -> Path:
    """``--store`` or ``STAGECACHE_STORE`` (relative to the working directory), else ``[tool.stagecache]
    store`` (relative to the project), else the user's cache directory."""
    chosen = given or os.environ.get("STAGECACHE_STORE")
    if chosen:
        return Path(os.path.expanduser(chosen)).resolve()
    if "store" in tool:
        return cfg.resolve_path(root, str(tool["store"]))
    return cache_dir() / "store"


def open_store(settings: cfg.Settings) -> DirectoryStore:
    assert settings.store is not None
    return DirectoryStore(settings.store)


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _path(value: object, base: Path) -> Path | None:
    if value is None:
        return None
    return (base / os.path.expanduser(str(value))).resolve()
