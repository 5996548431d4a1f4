"""``pyproject.toml``: the one TOML reader, and ``[tool.stagecache]`` checked against its keys."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..key.spec import BuildSecret

# [tool.stagecache] keys and the Python types their values must have.
KNOWN_KEYS: dict[str, type | tuple[type, ...]] = {
    "compose-file": (str, list),
    "store": str,
    "store-max-size": (str, int),
    "save": str,  # when builds are written into the store: "ci" (default), "always", "never"
    "repository": str,
    "targets": list,
    "secret-args": list,
    "secrets": dict,  # BuildKit secrets for every target: { ID = { env = "VAR" } | { file = "PATH" } }
    "dockerfile": str,
    "context": str,
    "build-args": dict,
    "test-service": str,
    "dev-packages": list,
    "run-service": str,
    "prod-target": str,
    "watch": bool,
    "test-command": (list, str),  # what `stagecache test` runs without `-- COMMAND`
    "test-timeout": (int, str),  # its time limit: seconds, or 30m, 2h
}


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as a dict; a file that cannot be read or parsed is a :class:`ConfigError` naming it."""
    if sys.version_info >= (3, 11):  # imported here: a project without pyproject.toml never needs it
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def read_tool_table(root: Path) -> dict[str, Any]:
    """``[tool.stagecache]`` of ``root/pyproject.toml``, checked against the known keys."""
    path = root / "pyproject.toml"
    if not path.is_file():
        return {}
    data = read_toml(path)
    tool = data.get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: [tool] must be a table")
    table = tool.get("stagecache", {})
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


def tool_secrets(table: dict[str, Any], root: Path) -> tuple[BuildSecret, ...]:
    """``[tool.stagecache] secrets``: ``{ pip_token = { env = "PIP_TOKEN" } }`` or ``{ file = "PATH" }``
    (relative to the project), BuildKit secrets passed to every target's build as compose's
    ``build.secrets`` are. Their values are never read by stagecache."""
    where = f"{root / 'pyproject.toml'}: [tool.stagecache] secrets"
    out = []
    for name, conf in (table.get("secrets") or {}).items():
        if not isinstance(conf, dict) or len(conf) != 1 or not isinstance(next(iter(conf.values())), str):
            raise ConfigError(f'{where}.{name}: write {{ env = "VARIABLE" }} or {{ file = "PATH" }}')
        ((kind, source),) = conf.items()
        if kind == "env":
            out.append(BuildSecret(str(name), "env", source))
        elif kind == "file":
            path = (root / os.path.expanduser(source)).resolve()
            out.append(BuildSecret(str(name), "file", str(path)))
        else:
            raise ConfigError(
                f'{where}.{name}: unknown source {kind!r}; write env = "VARIABLE" or file = "PATH"'
            )
    return tuple(out)
