"""Which compose files and ``.env`` a project has, found as compose 2.26 finds them: the file names in
order, their overrides, ``COMPOSE_FILE`` with its separator, parent folders, ``--env-file`` and
``COMPOSE_ENV_FILES``, and ``.env`` read as compose reads it (the compose-config cache keys on them)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigError

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
