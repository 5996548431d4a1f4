"""Compose files: which files compose reads, which services have a ``build:`` section, and the target
each one is.

Compose finds its own files (``compose.yaml`` or ``docker-compose.yml`` and their override,
``COMPOSE_FILE``), reads ``.env``, ``COMPOSE_PROFILES`` and ``COMPOSE_PROJECT_NAME``, and stagecache
reads the result through ``docker compose config --format json`` run in the project directory as the
user's own ``docker compose`` would be run there: anchors, merge keys, ``extends``, ``include``,
profiles and interpolation resolve exactly as compose resolves them. :func:`discover` follows compose's
rules for finding the files (compose-go's ``cli/options.go`` and compose's ``setEnvWithDotEnv``), to
know what the resolved configuration depends on (its cache, :mod:`stagecache.project.compose_cache`)
and which files a test run passes on with ``-f``.

Every key of a service's ``build:`` is either passed to the build and counted in the key, or refused
with one line naming it, the service and the fix (:data:`BUILD_KEYS`); none is dropped. ``secrets``
are passed as BuildKit secrets, as compose passes them; their values are never read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..key.spec import BuildOptions, BuildSecret, TargetSpec
from ..refs import default_repository, repository_of
from .settings import Target

# compose-go's DefaultFileNames and DefaultOverrideFileNames, in its order of preference.
COMPOSE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_NAMES = (
    "compose.override.yml",
    "compose.override.yaml",
    "docker-compose.override.yml",
    "docker-compose.override.yaml",
)

# Every key of a service's `build:` that compose knows, and what stagecache does with it:
#   key     passed to `docker buildx build` and counted in the key
#   tag     an extra name for the image, applied after the build
#   pass    passed to the build; it does not change the image (cache import/export, attestations)
#   secret  passed as --secret (see build_secrets); the id and kind count in the key, the value never
#   refuse  refused in one line with the fix (see _refused)
BUILD_KEYS: dict[str, str] = {
    "context": "key",  # the directory sent to BuildKit (a Git or URL context is refused)
    "dockerfile": "key",  # --file
    "args": "key",  # --build-arg; the args the reached stages declare are in the key
    "target": "key",  # --target
    "labels": "key",  # --label; the image config holds them
    "platforms": "key",  # one entry: --platform; more cannot be loaded into the daemon (refused)
    "extra_hosts": "key",  # --add-host: a RUN step's /etc/hosts
    "network": "key",  # --network: what a RUN step can reach
    "shm_size": "key",  # --shm-size: a RUN step's /dev/shm
    "ulimits": "key",  # --ulimit: a RUN step's limits
    "entitlements": "key",  # --allow
    "privileged": "key",  # --allow security.insecure
    "tags": "tag",  # tagged after the build, like `image:`
    "cache_from": "pass",  # --cache-from
    "cache_to": "pass",  # --cache-to
    "no_cache": "pass",  # --no-cache (a build stagecache runs; a hit is still a hit)
    "no_cache_filter": "pass",  # --no-cache-filter
    "provenance": "pass",  # --provenance: an attestation beside the image
    "sbom": "pass",  # --sbom: likewise
    "isolation": "refuse",  # Windows containers only; "default" is accepted as the no-op it is
    "pull": "refuse",  # a pull during the build could use another base image than the key names
    "dockerfile_inline": "refuse",
    "additional_contexts": "refuse",
    "secrets": "secret",
    "ssh": "refuse",
}

# Why a key is refused, and what to do instead.
REFUSED = {
    "dockerfile_inline": "the key reads the Dockerfile from a file: put it in one and name it with "
    "`dockerfile:`",
    "additional_contexts": "the key cannot see the other contexts' files: copy from a stage or an image "
    "instead, or build this service with compose",
    "ssh": "build this service with compose",
    "pull": "stagecache keys the base image it has, by ID, and a pull during the build could bring "
    "another: `docker pull` the base image before `stagecache build` and drop `pull: true`",
    "isolation": "it is a Windows container option, and BuildKit on Linux has no isolation modes: remove it",
}


# --- which files compose reads -----------------------------------------------------------------------
class ComposeFiles(NamedTuple):
    """What compose reads for a project, found as compose finds it."""

    files: tuple[Path, ...]  # the compose files, in compose's order
    directory: Path  # compose's working directory: the first file's
    env_files: tuple[Path, ...]  # the dotenv files compose reads (.env, --env-file, COMPOSE_ENV_FILES)
    profiles: tuple[str, ...]  # the active profiles: --profile, else COMPOSE_PROFILES
    explicit: bool  # named with --compose-file or [tool.stagecache] compose-file (passed with -f)
    given_profiles: tuple[str, ...] = ()  # --profile, as given
    given_env_files: tuple[Path, ...] = ()  # --env-file, absolute
    project_name: str | None = None  # -p/--project-name


def discover(
    root: Path,
    given: Sequence[str] = (),
    *,
    env_files: Sequence[str] = (),
    profiles: Sequence[str] = (),
    project_name: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ComposeFiles | None:
    """The files ``docker compose`` run in ``root`` reads, or None when it finds no compose file.

    ``given`` (``--compose-file``, relative to ``root``) are passed with ``-f``; without them compose
    takes ``COMPOSE_FILE`` (split at ``COMPOSE_PATH_SEPARATOR``, default ``:``), else looks for
    ``compose.yaml``/``compose.yml``/``docker-compose.yml``/``docker-compose.yaml`` and the matching
    override in ``root`` and then in each parent. ``COMPOSE_*`` variables may come from ``.env`` (the
    process environment wins), so the search runs twice, as compose's does: once to find the dotenv
    files, once with their values.
    """
    env = dict(os.environ if environ is None else environ)
    given_env = tuple(_absolute(root, e) for e in env_files)
    chosen_env = given_env
    if not chosen_env and env.get("COMPOSE_ENV_FILES"):
        chosen_env = tuple(_absolute(root, e) for e in env["COMPOSE_ENV_FILES"].split(","))
    first = _locate(root, given, env, chosen_env)
    if first is None:
        return None
    for path in first[2]:
        for name, value in read_dotenv(path, env).items():
            env.setdefault(name, value)  # the process environment wins
    second = _locate(root, given, env, chosen_env)
    assert second is not None  # the first search found files, with fewer variables
    files, directory, dotenv = second
    chosen = tuple(profiles) or tuple(
        p for p in (s.strip() for s in env.get("COMPOSE_PROFILES", "").split(",")) if p
    )
    return ComposeFiles(
        files=files,
        directory=directory,
        env_files=tuple(dict.fromkeys((*first[2], *dotenv))),
        profiles=chosen,
        explicit=bool(given),
        given_profiles=tuple(profiles),
        given_env_files=given_env,
        project_name=project_name,
    )


def _locate(
    root: Path, given: Sequence[str], env: Mapping[str, str], env_files: tuple[Path, ...]
) -> tuple[tuple[Path, ...], Path, tuple[Path, ...]] | None:
    """One pass of compose's search: the files, the working directory and the dotenv files."""
    if given:
        files = tuple(_absolute(root, g) for g in given)
        for f in files:
            if not f.is_file():
                raise ConfigError(f"{f}: compose file not found")
    elif "COMPOSE_FILE" in env:
        separator = env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep
        files = tuple(_absolute(root, f) for f in env["COMPOSE_FILE"].split(separator))
        for f in files:
            if not f.exists():
                raise ConfigError(f"{f}: compose file not found (named by COMPOSE_FILE)")
    else:
        found = _search(root)
        if not found:
            return None
        files = found
    directory = files[0].parent
    if env_files:
        dotenv = env_files
    elif _true(env.get("COMPOSE_DISABLE_ENV_FILE", "")):
        dotenv = ()
    else:
        default = directory / ".env"
        dotenv = (default,) if default.exists() and not default.is_dir() else ()
    return files, directory, dotenv


def _search(start: Path) -> tuple[Path, ...]:
    """``start`` and its parents, nearest first: the first compose file found there and its override."""
    here = start
    while True:
        for name in COMPOSE_NAMES:
            if (here / name).exists():
                override = next((here / o for o in OVERRIDE_NAMES if (here / o).exists()), None)
                return (here / name, override) if override else (here / name,)
        if here.parent == here:
            return ()
        here = here.parent


def _absolute(root: Path, path: str) -> Path:
    """As Go's ``filepath.Abs`` from ``root``: joined and cleaned, symlinks left alone."""
    return Path(os.path.normpath(os.path.join(root, os.path.expanduser(path))))


def _true(value: str) -> bool:
    return value in ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool


# --- dotenv files, as compose-go's parser reads them -----------------------------------------------
_DOTENV_KEY = re.compile(r"(?:export[ \t]+)?([A-Za-z0-9_.\-\[\]]+)[ \t]*([=:]|\n|$)")
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", '"': '"', "\\": "\\"}


def read_dotenv(path: Path, environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of a dotenv file; values may use the environment's and earlier lines' variables."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the env file: {exc}") from None
    return parse_dotenv(text, environ)


def parse_dotenv(text: str, environ: Mapping[str, str]) -> dict[str, str]:
    """``KEY=VALUE`` lines (also ``export KEY=VALUE`` and ``KEY: VALUE``); quoted values may span
    lines, double-quoted and unquoted ones expand ``$VAR``/``${VAR}``, ``#`` starts a comment."""
    out: dict[str, str] = {}
    rest = text
    while True:
        rest = rest.lstrip()
        if not rest:
            return out
        if rest.startswith("#"):
            rest = rest.partition("\n")[2]
            continue
        match = _DOTENV_KEY.match(rest)
        if match is None:  # compose refuses such a file; it says so when it reads it
            rest = rest.partition("\n")[2]
            continue
        name, sep = match.group(1), match.group(2)
        rest = rest[match.end() :]
        if sep in ("\n", ""):  # a name alone: the environment's value, if any
            if name in environ:
                out[name] = environ[name]
            continue
        rest = rest.lstrip(" \t")
        lookup = {**environ, **out}
        if rest[:1] in ("'", '"'):
            quote, value, i, escaped = rest[0], [], 1, False
            while i < len(rest) and (rest[i] != quote or escaped):
                char = rest[i]
                if char == "\\" and not escaped:
                    escaped = True
                elif escaped:
                    escaped = False
                    value.append(char if char == quote else "\\" + char)
                else:
                    value.append(char)
                i += 1
            raw, rest = "".join(value), rest[i + 1 :]
            if quote == '"':
                raw = re.sub(r"\\([abfnrtv\"\\$])", lambda m: "$$" if m[1] == "$" else _ESCAPES[m[1]], raw)
                raw = _expand(raw, lookup)
            out[name] = raw
        else:
            line, _, rest = rest.partition("\n")
            out[name] = _expand(line.partition(" #")[0].rstrip(), lookup)


def _expand(value: str, lookup: Mapping[str, str]) -> str:
    def one(match: re.Match[str]) -> str:
        if match[0] == "$$":
            return "$"
        name = match[1] or match[4]
        op, default = match[2], match[3] or ""
        have = lookup.get(name)
        if op in (":-", ":?"):
            return have if have else default
        if op in ("-", "?"):
            return have if have is not None else default
        if op == ":+":
            return default if have else ""
        if op == "+":
            return default if have is not None else ""
        return have or ""

    return _VARIABLE.sub(one, value)


# --- targets -----------------------------------------------------------------------------------------
def targets_from_compose(data: Mapping[str, Any], compose_file: Path) -> dict[str, Target]:
    """A target for each service with ``build:``; ``compose_file`` names the project in messages."""
    project = str(data.get("name") or compose_file.parent.name)
    targets: dict[str, Target] = {}
    for service, conf in sorted((data.get("services") or {}).items()):
        build = conf.get("build")
        if not build:
            continue
        where = f"{compose_file}: service {service!r}"
        spec, tags = build_spec(service, conf, where, data.get("secrets") or {})
        image = conf.get("image")
        repo = repository_of(image) if image else default_repository(project, service)
        targets[service] = Target(
            spec=spec, repository=repo, image=image or f"{repo}:latest", service=service, tags=tags
        )
    return targets


def build_spec(
    service: str, conf: Mapping[str, Any], where: str, secrets: Mapping[str, Any] | None = None
) -> tuple[TargetSpec, tuple[str, ...]]:
    """A service's build as a :class:`TargetSpec` and its extra tags; a key stagecache cannot honour
    is a :class:`ConfigError` naming it, the service and the fix. ``secrets``: the top-level
    ``secrets:`` that ``build.secrets`` names."""
    build: Mapping[str, Any] = conf["build"]
    for name, value in build.items():
        handling = BUILD_KEYS.get(name)
        if handling is None and not name.startswith("x-"):
            raise ConfigError(
                f"{where}: build.{name} is not known to this stagecache, so it cannot pass it to the "
                "build nor count it in the key; build this service with compose, or remove it"
            )
        if handling == "refuse" and _refused(name, value):
            raise ConfigError(f"{where}: build.{name} is not supported by stagecache; {REFUSED[name]}")

    raw_context = str(build.get("context") or ".")
    if not os.path.isabs(raw_context):  # compose makes a local context absolute: this is a URL
        raise ConfigError(
            f"{where}: build.context {raw_context!r} is not a local directory, and the key can only "
            "cover files stagecache can read; clone it and point `context:` at the checkout"
        )
    context = Path(raw_context)
    dockerfile = Path(build.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_absolute():
        dockerfile = context / dockerfile

    platform = conf.get("platform")
    platforms = [str(p) for p in build.get("platforms") or ()]
    if len(platforms) > 1:
        raise ConfigError(
            f"{where}: build.platforms names {len(platforms)} platforms, but one image goes into the "
            "daemon (`--load`); keep one, or set `platform:` and build the others with compose"
        )
    if platforms and not platform:
        platform = platforms[0]

    hosts = _extra_hosts(build.get("extra_hosts"))
    entitlements = {str(e) for e in build.get("entitlements") or ()}
    if build.get("privileged"):
        entitlements.add("security.insecure")
    network = build.get("network")
    options = BuildOptions(
        extra_hosts=hosts,
        network=str(network) if network and network != "default" else None,
        shm_size=str(build["shm_size"]) if build.get("shm_size") else None,
        ulimits=_ulimits(build.get("ulimits") or {}),
        entitlements=tuple(sorted(entitlements)),
        cache_from=tuple(str(c) for c in build.get("cache_from") or ()),
        cache_to=tuple(str(c) for c in build.get("cache_to") or ()),
        no_cache=bool(build.get("no_cache")),
        no_cache_filter=tuple(_strings(build.get("no_cache_filter"))),
        provenance=_flag(build.get("provenance")),
        sbom=_flag(build.get("sbom")),
    )
    spec = TargetSpec(
        name=service,
        context=context,
        dockerfile=dockerfile,
        stage=build.get("target"),
        build_args={str(k): str(v) for k, v in (build.get("args") or {}).items() if v is not None},
        platform=platform,
        labels={str(k): str(v) for k, v in (build.get("labels") or {}).items()},
        options=options,
        secrets=build_secrets(build.get("secrets") or [], secrets or {}, where),
    )
    return spec, tuple(str(t) for t in build.get("tags") or ())


def build_secrets(entries: object, declared: Mapping[str, Any], where: str) -> tuple[BuildSecret, ...]:
    """``build.secrets`` as compose 2.26 hands them to BuildKit: each names a top-level secret
    (``source``) with ``file:`` or ``environment:``, and is mounted under its ``target`` (else its
    name) as the id; ``uid``, ``gid`` and ``mode`` are ignored by BuildKit, as compose says."""
    out: dict[str, BuildSecret] = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        source = str(entry.get("source") if isinstance(entry, Mapping) else entry)
        target = str(entry.get("target") or "") if isinstance(entry, Mapping) else ""
        conf = declared.get(source)
        if not isinstance(conf, Mapping):
            raise ConfigError(
                f"{where}: build.secrets names {source!r}, which the top-level `secrets:` lacks"
            )
        if conf.get("file"):
            secret = BuildSecret(target or source, "file", str(conf["file"]))
        elif conf.get("environment"):
            secret = BuildSecret(target or source, "env", str(conf["environment"]))
        else:
            raise ConfigError(
                f"{where}: build.secrets {source!r} is neither `file:` nor `environment:`, and a build "
                "can only read those (as compose says): declare it with one of them"
            )
        out[secret.id] = secret
    return tuple(out.values())


def _refused(name: str, value: object) -> bool:
    if name == "isolation":
        return value not in (None, "", "default")
    return bool(value)


def _extra_hosts(value: object) -> tuple[str, ...]:
    """``host=ip`` entries, in compose's order, from a list (``host=ip`` or ``host:ip``) or a map."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        return tuple(f"{host}={ip}" for host, ips in value.items() for ip in _strings(ips))
    out = []
    for entry in _strings(value):
        host, sep, ip = entry.partition("=")
        if not sep:
            host, _, ip = entry.partition(":")
        out.append(f"{host.strip()}={ip.strip()}")
    return tuple(out)


def _ulimits(value: Mapping[str, Any]) -> tuple[str, ...]:
    """``name=soft:hard``, as compose hands ulimits to BuildKit (a single number is both)."""
    out = []
    for name, limit in sorted(value.items()):
        if isinstance(limit, Mapping):
            out.append(f"{name}={limit.get('soft')}:{limit.get('hard')}")
        else:
            out.append(f"{name}={limit}:{limit}")
    return tuple(out)


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _flag(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hidden_services(data: Mapping[str, Any], active: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Services of a configuration read with every profile (``--profile '*'``) that the active
    profiles leave out, with the profiles that would enable each."""
    out = {}
    for name, conf in (data.get("services") or {}).items():
        profiles = tuple(str(p) for p in conf.get("profiles") or ())
        if profiles and not set(profiles) & set(active):
            out[str(name)] = profiles
    return out
