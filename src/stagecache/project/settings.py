"""A project's settings: the compose file, then ``[tool.stagecache]``, then flags.

What compose has no words for (the store, its limits, default targets) comes from
``[tool.stagecache]`` in ``pyproject.toml``. Command-line flags override both.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple

from ..errors import ConfigError
from ..key.spec import DEFAULT_SECRET_PATTERNS, TargetSpec

if TYPE_CHECKING:
    from ..engine.base import Compose


class Target(NamedTuple):
    """A buildable target: its inputs (``spec``) and the names the resulting image gets."""

    spec: TargetSpec
    repository: str  # where key tags live: "<repository>:sc-<hex>"
    image: str | None = None  # the compose image name, tagged after every build
    service: str | None = None
    tags: tuple[str, ...] = ()  # compose `build.tags`: more names for the image, tagged after every build

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
        self.save = "ci"  # when builds are written into the store: see saves()
        self.secret_patterns: tuple[str, ...] = DEFAULT_SECRET_PATTERNS
        self.compose_files: list[Path] = []  # what compose reads, in its order (also found by compose)
        self.compose_data: dict[str, Any] = {}  # `docker compose config --format json`
        # The user's compose project: files, compose's working directory, the project name, and the
        # --profile/--env-file options to pass on to every compose call (Compose.global_argv). A test
        # run takes it with its own name and an override file: compose._replace(name=…, files=…).
        self.compose: Compose | None = None
        # Services that inactive profiles hide, with the profiles that enable each (asked on demand:
        # it takes a `docker compose config` of its own).
        self.hidden_services: Callable[[], Mapping[str, Sequence[str]]] = dict

    def saves(self) -> bool:
        """Whether this run writes its builds into the store. ``ci`` (the default): on a CI runner,
        whose daemon starts empty and whose cache directory is what the next job gets; not on a
        developer's machine, whose daemon keeps every image it built (a copy of each edit's image
        would cost every build a save, and the disk its bytes). The store is read everywhere."""
        return self.save == "always" or (self.save == "ci" and in_ci())

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
                hint = self.profile_hint(name)
                if hint:
                    raise ConfigError(hint)
                raise ConfigError(f"unknown target {name!r}; targets: {', '.join(sorted(self.targets))}")
            out.append(self.targets[name])
        return out

    def profile_hint(self, service: str) -> str | None:
        """Why ``service`` is not in the configuration when a profile that is not active hides it, and
        how to enable it; None otherwise."""
        profiles = self.hidden_services().get(service)
        if not profiles:
            return None
        names = " or ".join(repr(p) for p in profiles)
        return (
            f"service {service!r} is in profile {names}, which is not active: pass --profile "
            f"{profiles[0]} (or set COMPOSE_PROFILES={profiles[0]})"
        )


# Set by the CI services to say a job runs there: CI=true by GitHub Actions, GitLab CI, CircleCI, Travis,
# Buildkite, Drone, Woodpecker; the others name themselves.
CI_VARIABLES = (
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "CIRCLECI",
    "JENKINS_URL",
    "TF_BUILD",
    "BUILDKITE",
    "TEAMCITY_VERSION",
)
SAVE_POLICIES = ("ci", "always", "never")


def in_ci(env: Mapping[str, str] | None = None) -> bool:
    """Whether this process runs as a CI job."""
    env = os.environ if env is None else env
    flag = env.get("CI", "").strip().lower()
    return flag not in ("", "0", "false", "no") or any(env.get(name) for name in CI_VARIABLES)


class Options(NamedTuple):
    """What the command line says about the project (None: not given)."""

    project_dir: Path = Path()  # the working directory
    compose_files: Sequence[str] = ()
    dockerfile: str | None = None
    context: str | None = None
    build_args: Mapping[str, str] = MappingProxyType({})
    store: str | None = None
    save: bool = False  # --save: write this run's builds into the store, wherever it runs
    repository: str | None = None
    project_name: str | None = None  # -p/--project-name, passed to compose
    profiles: Sequence[str] = ()  # --profile, passed to compose
    env_files: Sequence[str] = ()  # --env-file, passed to compose (relative to the working directory)


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
