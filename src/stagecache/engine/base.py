"""What the use cases ask of a container engine, as a Protocol, and the values it answers with.

:class:`~stagecache.engine.docker.Docker` is the implementation (the docker CLI, BuildKit through
``buildx``, compose, and the Engine API on the local socket for the calls a hit makes). Unit tests use
a fake fed with JSON recorded from a real engine (``tests/fakes.py``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from types import MappingProxyType
from typing import IO, Any, NamedTuple, Protocol

from ..key.spec import NO_OPTIONS, BuildOptions, BuildSecret
from ..process import Completed

NO_CONTEXTS: Mapping[str, str] = MappingProxyType({})


class EngineInfo(NamedTuple):
    version: str
    platform: str  # e.g. linux/amd64
    api_version: str = ""


# Docker Engine versions stagecache supports (tested: 20.10 and 26.1, classic and containerd stores).
SUPPORTED = "20.10 and 23 to 29"


def unsupported(info: EngineInfo) -> str | None:
    """One line when the engine's version is not one stagecache supports (it may still work)."""
    parts = info.version.split("+")[0].split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        return f"Docker Engine {info.version!r} is not a version stagecache knows (it supports {SUPPORTED})"
    if (major, minor) == (20, 10) or 23 <= major <= 29:
        return None
    return f"Docker Engine {info.version} is not one stagecache supports ({SUPPORTED}); it may work"


class ImageInfo(NamedTuple):
    """The parts of ``docker image inspect`` that stagecache uses."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: Mapping[str, str]
    os: str
    architecture: str
    size: int
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # diff IDs, base first
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers, run when this image is a FROM base
    created: str = ""
    env: tuple[str, ...] = ()  # Config.Env, NAME=value: what the words of a stage built FROM it can read

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ImageInfo:
        config = data.get("Config") or {}
        return cls(
            id=data["Id"],
            repo_tags=tuple(data.get("RepoTags") or ()),
            repo_digests=tuple(data.get("RepoDigests") or ()),
            labels=dict(config.get("Labels") or {}),
            os=data.get("Os", ""),
            architecture=data.get("Architecture", ""),
            size=int(data.get("Size") or 0),
            cmd=tuple(config.get("Cmd") or ()),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            layers=tuple((data.get("RootFS") or {}).get("Layers") or ()),
            onbuild=tuple(config.get("OnBuild") or ()),
            created=str(data.get("Created") or ""),
            env=tuple(config.get("Env") or ()),
        )


class Compose(NamedTuple):
    """A compose project: its files, directory and the project name to run it under, and the
    ``--profile`` and ``--env-file`` options the user gave (compose reads ``COMPOSE_PROFILES`` and
    ``.env`` itself). :meth:`global_argv` spells them for ``docker compose``."""

    files: tuple[Path, ...]
    directory: Path
    name: str
    profiles: tuple[str, ...] = ()
    env_files: tuple[Path, ...] = ()

    def global_argv(self) -> list[str]:
        """``--project-directory D --project-name N -f F… --profile P… --env-file E…``."""
        out = ["--project-directory", str(self.directory)]
        if self.name:
            out += ["--project-name", self.name]
        for f in self.files:
            out += ["-f", str(f)]
        for profile in self.profiles:
            out += ["--profile", profile]
        for env_file in self.env_files:
            out += ["--env-file", str(env_file)]
        return out


class Engine(Protocol):
    """Everything ``build``, ``testrun`` and ``checkprod`` ask of the engine."""

    # --- the engine and its images ---
    def engine(self) -> EngineInfo: ...
    def image_store(self) -> str: ...
    def image_inspect(self, ref: str) -> ImageInfo | None: ...
    def tag(self, source: str, target: str) -> None: ...
    def key_tagged(self) -> list[tuple[str, ImageInfo]]: ...
    def pull(self, ref: str) -> Completed: ...
    def untag(self, ref: str) -> bool: ...
    def untag_repository(self, repository: str) -> None: ...
    def remove_image(self, *refs: str, force: bool = False) -> None: ...

    # --- building, saving, loading ---
    def build(
        self,
        *,
        context: Path,
        dockerfile: Path,
        target: str | None,
        tags: Sequence[str],
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        platform: str | None = None,
        no_cache: bool = False,
        quiet: bool = False,
        iidfile: Path,
        options: BuildOptions = NO_OPTIONS,
        env_args: Collection[str] = (),
        secrets: Sequence[BuildSecret] = (),
        build_contexts: Mapping[str, str] = NO_CONTEXTS,
    ) -> Completed: ...
    def bake(
        self, definition: Mapping[str, Any], targets: Sequence[str], *, metadata: Path, quiet: bool = False
    ) -> Completed: ...
    def save_file(self, image: str | Sequence[str], path: Path) -> None: ...
    def save_stream(self, images: Sequence[str]) -> AbstractContextManager[IO[bytes]]: ...
    def load(self, chunks: Iterable[bytes]) -> str: ...

    # --- containers and compose ---
    def compose_config(
        self,
        directory: Path,
        files: Sequence[Path] = (),
        *,
        project_name: str | None = None,
        profiles: Sequence[str] = (),
        env_files: Sequence[Path] = (),
    ) -> dict[str, Any]: ...
    def compose(
        self, project: Compose, *args: str, capture: bool = True, check: bool = True
    ) -> Completed: ...
    def compose_ps(self, project: Compose) -> list[dict[str, Any]]: ...
    def health_log(self, container: str) -> str: ...
    def project_leftovers(self, project_name: str) -> dict[str, list[str]]: ...
    def remove_container(self, name: str) -> None: ...
    def run_container(self, image: str, command: Sequence[str], options: Sequence[str]) -> int: ...
    def capture_in(self, image: str, entrypoint: str, command: Sequence[str]) -> Completed: ...

    # --- a test run's own containers and volumes ---
    def container_state(self, container: str) -> dict[str, Any]: ...
    def remove_labelled_volumes(self, label: str) -> list[str]: ...
