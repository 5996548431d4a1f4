"""stagecache: content-addressed builds of Dockerfile targets, and tests run inside them.

The public names below are imported on first use, so that ``stagecache --version`` and a warm hit do
not pay for modules they never touch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS = {
    "BuildError": "errors",
    "CommandError": "errors",
    "ConfigError": "errors",
    "DockerfileError": "errors",
    "EngineError": "errors",
    "ExitCode": "errors",
    "StagecacheError": "errors",
    "StoreError": "errors",
    "Settings": "project.settings",
    "Target": "project.settings",
    "Docker": "engine.docker",
    "Inputs": "key.inputs",
    "TargetSpec": "key.spec",
    "collect": "key.inputs",
    "compute_key": "key.digest:compute",
    "diff_manifests": "key.digest:diff",
    "Resolver": "build",
    "Result": "build",
    "DirectoryStore": "store.directory",
}

__all__ = [
    "BuildError",
    "CommandError",
    "ConfigError",
    "DirectoryStore",
    "Docker",
    "DockerfileError",
    "EngineError",
    "ExitCode",
    "Inputs",
    "Resolver",
    "Result",
    "Settings",
    "StagecacheError",
    "StoreError",
    "Target",
    "TargetSpec",
    "__version__",
    "collect",
    "compute_key",
    "diff_manifests",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'stagecache' has no attribute {name!r}")
    module, _, attr = _EXPORTS[name].partition(":")
    value = getattr(importlib.import_module(f".{module}", __name__), attr or name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .build import Resolver, Result
    from .engine.docker import Docker
    from .errors import (
        BuildError,
        CommandError,
        ConfigError,
        DockerfileError,
        EngineError,
        ExitCode,
        StagecacheError,
        StoreError,
    )
    from .key.digest import compute as compute_key
    from .key.digest import diff as diff_manifests
    from .key.inputs import Inputs, collect
    from .key.spec import TargetSpec
    from .project.settings import Settings, Target
    from .store.directory import DirectoryStore
