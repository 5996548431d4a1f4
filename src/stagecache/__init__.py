"""stagecache: content-addressed builds of Dockerfile targets, and tests run inside them."""

from __future__ import annotations

from .config import Settings, Target
from .docker import Docker
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
from .inputs import Inputs, TargetSpec, collect
from .key import compute as compute_key
from .key import diff as diff_manifests
from .resolve import Resolver, Result
from .store import DirectoryStore

__version__ = "0.1.0"

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
