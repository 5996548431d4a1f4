"""Put a project's settings together: the compose file, then ``[tool.stagecache]``, then flags."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

from ..engine.base import Compose, Engine
from ..errors import ConfigError
from ..key import dockerfile as df
from ..key.spec import DEFAULT_SECRET_PATTERNS, TargetSpec, secret_arg
from ..refs import default_repository
from . import compose_cache
from .compose import hidden_services, targets_from_compose
from .compose_files import ComposeFiles, discover
from .pyproject import read_tool_table, tool_secrets
from .settings import SAVE_POLICIES, Options, Settings, Target, cache_dir, store_location
from .values import parse_size


def load(opts: Options, engine: Engine) -> Settings:
    root = opts.project_dir.resolve()
    if not root.is_dir():
        raise ConfigError(f"{opts.project_dir}: project directory not found")
    tool = read_tool_table(root)
    tool_args = {str(k): str(v) for k, v in tool.get("build-args", {}).items()}
    patterns = tuple(str(p) for p in tool.get("secret-args", DEFAULT_SECRET_PATTERNS))

    given_compose = list(opts.compose_files) or _as_list(tool.get("compose-file"))
    found = None
    if not opts.dockerfile:
        found = discover(
            root,
            given_compose,
            env_files=[str(_path(e, Path.cwd())) for e in opts.env_files],
            profiles=opts.profiles,
            project_name=opts.project_name,
        )
    settings = Settings(root=root, targets={}, defaults=[str(t) for t in tool.get("targets", [])], tool=tool)
    if found is not None:
        data = compose_cache.resolved(
            engine, found, root, cache=cache_dir() / "compose", secret=lambda n, v: secret_arg(n, v, patterns)
        )
        settings.compose_files = list(found.files)
        settings.compose_data = data
        settings.compose = Compose(
            found.files,
            found.directory,
            str(data.get("name") or ""),
            profiles=found.given_profiles,
            env_files=found.given_env_files,
        )
        settings.hidden_services = _hidden(engine, found, root)
        targets = targets_from_compose(data, found.files[0])
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
        targets, last = targets_from_dockerfile(root, dockerfile, context, repository)
        settings.defaults = settings.defaults or [last]
    secrets = tool_secrets(tool, root)  # compose's build.secrets win for the same id
    settings.targets = {
        name: t._replace(
            spec=t.spec._replace(
                build_args={**tool_args, **t.spec.build_args, **opts.build_args},
                secrets=tuple({s.id: s for s in (*secrets, *t.spec.secrets)}.values()),
            ),
            repository=opts.repository or t.repository,
        )
        for name, t in targets.items()
    }
    settings.store = store_location(root, opts.store, tool)
    settings.save = save_policy(tool, root, opts.save)
    if "store-max-size" in tool:
        settings.store_max_size = parse_size(tool["store-max-size"], f"{root}/pyproject.toml")
    settings.secret_patterns = patterns
    return settings


def _hidden(engine: Engine, found: ComposeFiles, root: Path) -> Callable[[], dict[str, tuple[str, ...]]]:
    """Services that inactive profiles hide: a `docker compose config` with every profile, on demand."""

    def hidden() -> dict[str, tuple[str, ...]]:
        try:
            data = compose_cache.ask(engine, found._replace(given_profiles=("*",)), root)
        except ConfigError:
            return {}
        return hidden_services(data, found.profiles)

    return hidden


def targets_from_dockerfile(
    root: Path, dockerfile: Path, context: Path, repository: str | None
) -> tuple[dict[str, Target], str]:
    """Without a compose file, each named stage is a target. Returns them and the default (the last)."""
    parsed = df.load(dockerfile)
    out: dict[str, Target] = {}
    for stage in parsed.stages:
        if stage.name is None and stage is not parsed.stages[-1]:
            continue
        # Two Dockerfiles of one project may both have a stage "dev" (or an unnamed last one): the
        # Dockerfile's own name, where it is not the default, keeps their repositories (and so their
        # build records) apart.
        named = "" if dockerfile.name == "Dockerfile" else f"{dockerfile.name}-"
        repo = repository or default_repository(root.resolve().name, f"{named}{stage.label}")
        spec = TargetSpec(name=stage.label, context=context, dockerfile=dockerfile, stage=stage.name)
        out[stage.label] = Target(spec=spec, repository=repo)
    return out, parsed.stages[-1].label


def _as_list(value: object) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _path(value: object, base: Path) -> Path | None:
    if value is None:
        return None
    return (base / os.path.expanduser(str(value))).resolve()


def save_policy(tool: Mapping[str, object], root: Path, forced: bool) -> str:
    """``--save``, else ``STAGECACHE_SAVE``, else ``[tool.stagecache] save``, else ``ci``."""
    if forced:
        return "always"
    env = os.environ.get("STAGECACHE_SAVE")
    value = env if env is not None else tool.get("save", "ci")
    where = "STAGECACHE_SAVE" if env is not None else f"{root}/pyproject.toml: [tool.stagecache] save"
    if value not in SAVE_POLICIES:
        raise ConfigError(f"{where} = {value!r}: say one of {', '.join(map(repr, SAVE_POLICIES))}")
    return str(value)
