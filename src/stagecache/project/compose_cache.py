"""The resolved compose configuration, cached, so that a hit does not start ``docker compose config``.

``docker compose config`` costs 60-100 ms, most of a warm hit. Its answer is a function of what compose
reads, so it is kept in the user's cache directory (``compose/`` under
:func:`~stagecache.project.settings.cache_dir`) under a key made of all of that:

- the compose files compose finds (:func:`~stagecache.project.compose_files.discover`), by content;
- the dotenv files (``.env``, ``--env-file``, ``COMPOSE_ENV_FILES``), by content;
- every other file the files may name (``env_file:``, ``extends: file:``, ``include:``, ``label_file``):
  each word of the files that looks like a path and is a regular file relative to the file that holds
  the word (as compose resolves it), next to a top-level compose file or in the project, by content (by
  size, mtime and inode above 1 MiB), and the files those name in turn (with the ``.env`` next to each);
- the environment: every ``COMPOSE_*`` and ``DOCKER_*`` variable, and each variable named by a word of
  any of those files (``${VAR}``, ``$VAR``, a bare ``environment:`` entry, a build arg without a value),
  set or not;
- compose itself: the docker CLI and its compose plugin (path, size, mtime, inode), the CLI's
  ``config.json``;
- the project directory and the options (``--compose-file``, ``-p``, ``--profile``, ``--env-file``).

The words are over-counted on purpose: a needless miss costs one ``docker compose config``, a stale
hit a wrong configuration. A file with a remote ``include:`` (Git, OCI) is never cached, nor is a
configuration that gives a secret-looking build arg a value (``secret-args``): the cache directory
never holds a secret. Each project and set of options has one entry, replaced when its key changes,
written atomically. Deleting the directory is always safe; ``STAGECACHE_COMPOSE_CACHE=0`` turns the
cache off.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from .compose_files import ComposeFiles

if TYPE_CHECKING:
    from ..engine.base import Engine

VERSION = 1  # of the entries' format and of what the key covers
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PATHISH = re.compile(r"[\w.~/@+\-]*[./][\w.~/@+\-]*")
_REMOTE_INCLUDE = re.compile(r"^\s*include\s*:", re.MULTILINE)
_BIG = 1 << 20  # referenced files larger than this count by stat, not content
_MAX_SCANNED = 200  # referenced files whose words are read in turn
_PLUGIN_DIRS = (
    "/usr/local/lib/docker/cli-plugins",
    "/usr/local/libexec/docker/cli-plugins",
    "/usr/lib/docker/cli-plugins",
    "/usr/libexec/docker/cli-plugins",
)


def resolved(
    engine: Engine,
    found: ComposeFiles,
    root: Path,
    *,
    cache: Path | None,
    environ: Mapping[str, str] | None = None,
    secret: Callable[[str, str], bool] = lambda name, value: False,
) -> dict[str, Any]:
    """The configuration ``docker compose config`` gives for ``found``: from ``cache`` (a directory)
    when an entry's key matches, else from compose, then kept there unless a build arg is ``secret``
    (by name and value) and has a value. ``cache`` None: always compose."""
    env = os.environ if environ is None else environ
    if cache is None or env.get("STAGECACHE_COMPOSE_CACHE") == "0":
        return ask(engine, found, root)
    key = cache_key(found, root, env)
    entry = cache / f"{slot(found, root)}.json"
    if key is not None:
        data = _read(entry, key)
        if data is not None:
            return data
    data = ask(engine, found, root)
    if key is not None and not _secret_args(data, secret):
        _write(entry, key, data)
    elif key is not None:
        entry.unlink(missing_ok=True)  # nor an earlier entry of this project, which may hold one
    return data


def _secret_args(data: Mapping[str, Any], secret: Callable[[str, str], bool]) -> bool:
    """Whether a service's build gives a secret-looking build arg a value."""
    for conf in (data.get("services") or {}).values():
        args = ((conf or {}).get("build") or {}).get("args") or {}
        if isinstance(args, Mapping) and any(v and secret(str(n), str(v)) for n, v in args.items()):
            return True
    return False


def ask(engine: Engine, found: ComposeFiles, root: Path) -> dict[str, Any]:
    """``docker compose config`` run in ``root`` as the user would run it: ``-f`` only for files named
    explicitly, ``-p``, ``--profile`` and ``--env-file`` only as given. An error names the files compose
    read (compose's own message often names only a line)."""
    try:
        return engine.compose_config(
            root,
            found.files if found.explicit else (),
            project_name=found.project_name,
            profiles=found.given_profiles,
            env_files=found.given_env_files,
        )
    except ConfigError as exc:
        if found.explicit or not found.files:
            raise
        names = ", ".join(str(f) for f in found.files)
        raise ConfigError(f"{names}: {str(exc).split(': ', 1)[-1]}") from None


def slot(found: ComposeFiles, root: Path) -> str:
    """The entry's name: the project and the options (its key says whether it is still right)."""
    material = [str(root), found.explicit and [str(f) for f in found.files], found.project_name,
                list(found.given_profiles), [str(e) for e in found.given_env_files]]  # fmt: skip
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()[:32]


def cache_key(found: ComposeFiles, root: Path, environ: Mapping[str, str]) -> str | None:
    """The digest of everything ``docker compose config`` reads for ``found``; None: do not cache (a
    remote ``include:``)."""
    texts: dict[str, bytes] = {}
    folders: dict[str, Path] = {}  # each scanned text's own directory: compose resolves its paths there
    files = []
    for path in (*found.files, *found.env_files):
        content = _content(path)
        files.append([str(path), _digest(content)])
        if content is not None:
            texts[str(path)] = content
            folders[str(path)] = path.parent
    if any(_remote_include(texts[str(f)]) for f in found.files if str(f) in texts):
        return None
    bases = list(dict.fromkeys([found.directory, root, *(f.parent for f in found.files)]))
    names: set[str] = set()
    referenced: dict[str, str | None] = {}
    todo = [(folders[name], content) for name, content in texts.items()]
    scanned = 0
    while todo:
        folder, raw = todo.pop()
        text = raw.decode("utf-8", "replace")
        words = _NAME.findall(text)
        names.update(words)
        candidates = set(_PATHISH.findall(text))
        candidates.update(v for n in words if (v := environ.get(n)) and ("/" in v or "." in v))
        candidates.add(".env")  # an included file's project reads the .env of its own directory
        own = [folder, *(b for b in bases if b != folder)]
        for name, content, digest in _existing(candidates, own):
            if name in referenced or name in texts:
                continue
            referenced[name] = digest
            if content is None or scanned >= _MAX_SCANNED:
                continue
            scanned += 1
            if name.endswith((".yml", ".yaml")):  # `include:`, `extends: file:`: compose files in turn
                if _remote_include(content):
                    return None
                todo.append((Path(name).parent, content))
            else:  # an env file's values may name variables too
                names.update(_NAME.findall(content.decode("utf-8", "replace")))
    names.update(n for n in environ if n.startswith(("COMPOSE_", "DOCKER_")))
    names.update(("HOME", "PWD"))
    material = {
        "version": VERSION,
        "root": str(root),
        "directory": str(found.directory),
        "explicit": found.explicit,
        "project_name": found.project_name,
        "profiles": list(found.given_profiles),
        "env_files": [str(e) for e in found.given_env_files],
        "files": files,
        "referenced": sorted(referenced.items()),
        "environment": sorted((n, environ.get(n)) for n in names),
        "compose": _compose_binaries(environ),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode("utf-8", "surrogateescape")).hexdigest()


def _existing(candidates: Iterable[str], bases: list[Path]) -> Iterable[tuple[str, bytes | None, str]]:
    """Each candidate word that names a regular file (absolute, from the home directory, or relative to
    one of ``bases``): its path, its content (None if large) and the digest that stands for it."""
    for word in candidates:
        word = word.lstrip("-")
        if not word or word in (".", ".."):
            continue
        if word.startswith("~"):
            options = [Path(os.path.expanduser(word))]
        elif word.startswith("/"):
            options = [Path(word)]
        else:
            options = [base / word for base in bases]
        for path in options:
            try:
                st = os.stat(path)
            except (OSError, ValueError):
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            name = os.path.normpath(path)
            if st.st_size > _BIG:
                yield name, None, f"stat:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}"
                continue
            content = _content(path)
            yield name, content, _digest(content)


def _content(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:
        return None


def _digest(content: bytes | None) -> str:
    return "absent" if content is None else hashlib.sha256(content).hexdigest()


def _remote_include(content: bytes) -> bool:
    text = content.decode("utf-8", "replace")
    return bool(_REMOTE_INCLUDE.search(text)) and ("://" in text or "git@" in text)


def _compose_binaries(environ: Mapping[str, str]) -> list[list[object]]:
    """The docker CLI on PATH, every compose plugin it could run, and its config file, by stat."""
    config = Path(environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"))
    paths = [config / "config.json", config / "cli-plugins" / "docker-compose"]
    paths += [Path(d) / "docker-compose" for d in _PLUGIN_DIRS]
    for directory in environ.get("PATH", "").split(os.pathsep):
        if directory and os.access(os.path.join(directory, "docker"), os.X_OK):
            paths.insert(0, Path(directory) / "docker")
            break
    out: list[list[object]] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.append([str(path), st.st_size, st.st_mtime_ns, st.st_ino])
    return out


def _read(entry: Path, key: str) -> dict[str, Any] | None:
    try:
        stored = json.loads(entry.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or stored.get("version") != VERSION or stored.get("key") != key:
        return None
    data = stored.get("config")
    return data if isinstance(data, dict) else None


def _write(entry: Path, key: str, data: dict[str, Any]) -> None:
    from ..store.files import atomic_write  # only a miss writes

    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(entry, json.dumps({"version": VERSION, "key": key, "config": data}).encode())
    except OSError:
        pass  # a cache that cannot be written only makes the next run slower
