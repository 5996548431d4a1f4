"""Compose files: which services have a ``build:`` section, and the target each one is.

Compose files are read through ``docker compose config --format json``, so anchors, merge keys,
``extends``, profiles and interpolation resolve exactly as compose resolves them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..key.spec import TargetSpec
from ..refs import default_repository, repository_of
from .settings import Target

COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")

# Compose build options that would change what is built in ways the key cannot see (yet).
UNSUPPORTED_BUILD_KEYS = {
    "dockerfile_inline": "put the Dockerfile in a file and name it with `dockerfile:`",
    "additional_contexts": "copy from a stage or an image instead, or build this service with compose",
    "secrets": "build this service with compose, or pass the value some other way",
    "ssh": "build this service with compose",
}


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
        repo = repository_of(image) if image else default_repository(project, service)
        targets[service] = Target(
            spec=spec, repository=repo, image=image or f"{repo}:latest", service=service
        )
    return targets
