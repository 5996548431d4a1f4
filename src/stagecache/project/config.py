"""Which targets exist and how to treat them: the compose file, ``[tool.stagecache]``, then flags.

Compose files are read through ``docker compose config --format json``, so anchors, merge keys,
``extends``, profiles and interpolation resolve exactly as compose resolves them. What compose has no
words for (the store, its limits, default targets) comes from ``[tool.stagecache]`` in
``pyproject.toml``. Command-line flags override both.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..key.inputs import DEFAULT_SECRET_PATTERNS, TargetSpec

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# [tool.stagecache] keys and the Python types their values must have.
KNOWN_KEYS: dict[str, type | tuple[type, ...]] = {
    "compose-file": (str, list),
    "store": str,
    "store-max-size": (str, int),
    "repository": str,
    "targets": list,
    "secret-args": list,
    "dockerfile": str,
    "context": str,
    "build-args": dict,
    "test-service": str,
    "dev-packages": list,
    "run-service": str,
    "prod-target": str,
    "watch": bool,
}


# Compose build options that would change what is built in ways the key cannot see (yet).
UNSUPPORTED_BUILD_KEYS = {
    "dockerfile_inline": "put the Dockerfile in a file and name it with `dockerfile:`",
    "additional_contexts": "copy from a stage or an image instead, or build this service with compose",
    "secrets": "build this service with compose, or pass the value some other way",
    "ssh": "build this service with compose",
}


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


def parse_size(value: str | int, where: str) -> int:
    if isinstance(value, int):
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", value.lower())
    if not match:
        raise ConfigError(f"{where}: cannot read size {value!r}: write e.g. 500MB or 10GiB")
    number, unit, suffix = float(match.group(1)), match.group(2), match.group(3)
    base = 1024 if suffix.startswith("i") else 1000
    return int(number * base ** "_kmgt".index(unit or "_"))


def read_tool_table(root: Path) -> dict[str, Any]:
    """``[tool.stagecache]`` of ``root/pyproject.toml``, checked against the known keys."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):  # imported here: a project without pyproject.toml never needs it
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    table = data.get("tool", {}).get("stagecache", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.stagecache] must be a table")
    for key, value in table.items():
        if key not in KNOWN_KEYS:
            import difflib

            close = difflib.get_close_matches(key, KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known keys: {', '.join(KNOWN_KEYS)}"
            raise ConfigError(f"{path}: unknown key {key!r} in [tool.stagecache]; {hint}")
        if not isinstance(value, KNOWN_KEYS[key]):
            raise ConfigError(f"{path}: [tool.stagecache] {key} has the wrong type ({type(value).__name__})")
    return table


def find_compose_files(root: Path, given: Sequence[str]) -> list[Path]:
    if given:
        files = [root / g for g in given]
        for f in files:
            if not f.is_file():
                raise ConfigError(f"{f}: compose file not found")
        return files
    for name in COMPOSE_NAMES:
        if (root / name).is_file():
            return [root / name]
    return []


def default_repository(project: str, service: str) -> str:
    """Compose's own default image name for a service without ``image:``."""
    return re.sub(r"[^a-z0-9_.-]", "", f"{project}-{service}".lower()) or "stagecache"


def split_image(image: str) -> str:
    """``repo:tag`` or ``repo@digest`` -> ``repo`` (a registry port is not a tag)."""
    name = image.split("@", 1)[0]
    head, sep, tail = name.rpartition(":")
    return head if sep and "/" not in tail else name


def targets_from_compose(data: Mapping[str, Any], compose_file: Path) -> dict[str, Target]:
    project = str(data.get("name") or compose_file.parent.name)
    targets: dict[str, Target] = {}
    for service, conf in sorted((data.get("services") or {}).items()):
        build = conf.get("build")
        if not build:
            continue
        context = Path(build.get("context") or compose_file.parent)
        if not context.is_absolute():
            context = compose_file.parent / context
        dockerfile = Path(build.get("dockerfile") or "Dockerfile")
        if not dockerfile.is_absolute():
            dockerfile = context / dockerfile
        where = f"{compose_file}: service {service!r}"
        for unsupported, fix in UNSUPPORTED_BUILD_KEYS.items():
            if build.get(unsupported):
                raise ConfigError(f"{where}: build.{unsupported} is not supported by stagecache yet; {fix}")
        args = {str(k): str(v) for k, v in (build.get("args") or {}).items() if v is not None}
        image = conf.get("image")
        spec = TargetSpec(
            name=service,
            context=context,
            dockerfile=dockerfile,
            stage=build.get("target"),
            build_args=args,
            platform=conf.get("platform"),
            labels={str(k): str(v) for k, v in (build.get("labels") or {}).items()},
        )
        repo = split_image(image) if image else default_repository(project, service)
        targets[service] = Target(
            spec=spec, repository=repo, image=image or f"{repo}:latest", service=service
        )
    return targets


def targets_from_dockerfile(
    root: Path, dockerfile: Path, context: Path, repository: str | None
) -> tuple[dict[str, Target], str]:
    """Without a compose file, each named stage is a target. Returns them and the default (the last)."""
    from ..key import dockerfile as df

    parsed = df.load(dockerfile)
    out: dict[str, Target] = {}
    for stage in parsed.stages:
        if stage.name is None and stage is not parsed.stages[-1]:
            continue
        repo = repository or default_repository(root.resolve().name, stage.label)
        spec = TargetSpec(name=stage.label, context=context, dockerfile=dockerfile, stage=stage.name)
        out[stage.label] = Target(spec=spec, repository=repo)
    return out, parsed.stages[-1].label


def resolve_path(root: Path, value: str) -> Path:
    return (root / os.path.expanduser(os.path.expandvars(value))).resolve()
