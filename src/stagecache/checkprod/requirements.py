"""Requirement files: which ones are dev (``requirements*dev*.txt``, ``requirements/*dev*.txt``, test,
lint, ...), read as pip reads them, ``-r`` includes followed; the declarations' last resort."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

from packaging.requirements import Requirement

from ..errors import ConfigError
from .graph import DEV_FILE_WORDS, Edge, Env, edge_of, marker_holds, parse_requirement


def requirement_files(root: Path) -> list[Path]:
    return sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt"))


def is_dev_file(path: Path, root: Path) -> bool:
    """``requirements-dev.txt``, ``requirements_test.txt``, ``requirements/dev.txt``,
    ``requirements/local.txt``…"""
    stem = path.stem.lower() if path.parent != root else path.stem.lower().removeprefix("requirements")
    if "dev" in stem or "test" in stem:
        return True
    return bool(set(re.split(r"[^a-z0-9]+", stem)) & DEV_FILE_WORDS)


class RequirementLine(NamedTuple):
    req: Requirement
    path: Path


def read_requirements(path: Path, seen: set[Path] | None = None) -> Iterator[RequirementLine]:
    """The requirements of a pip requirements file and of the files it includes with ``-r``, as pip
    reads them: continuations joined, comments and options (``--hash``, ``-c``, ``-i``) left out,
    ``-e URL#egg=NAME`` by its name. Lines that name no package (a path, a bare URL) are skipped."""
    seen = seen if seen is not None else set()
    resolved = path.resolve()
    if resolved in seen or not path.is_file():
        return
    seen.add(resolved)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    for line in _logical_lines(text):
        words = line.split()
        include = _included(words)
        if include is not None:
            yield from read_requirements(path.parent / include, seen)
        elif words[0] in ("-e", "--editable") and len(words) > 1:
            egg = re.search(r"[#&]egg=([^&\s]+)", words[1])
            req = parse_requirement(egg.group(1)) if egg else None
            if req is not None:
                yield RequirementLine(req, path)
        elif not words[0].startswith("-"):
            # options may follow a requirement: "name==1 --hash=sha256:…"
            spec = re.split(r"\s+--?[a-zA-Z]", line, maxsplit=1)[0]
            req = parse_requirement(spec)
            if req is not None:
                yield RequirementLine(req, path)


def _included(words: Sequence[str]) -> str | None:
    """The file of ``-r FILE``, ``-rFILE``, ``--requirement FILE`` or ``--requirement=FILE``."""
    first = words[0]
    if first in ("-r", "--requirement"):
        return words[1] if len(words) > 1 else None
    if first.startswith("--requirement="):
        return first.split("=", 1)[1]
    if first.startswith("-r"):
        return first[2:]
    return None


def _logical_lines(text: str) -> Iterator[str]:
    pending = ""
    for raw in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw)  # pip: "#" at the start or after whitespace
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        line = (pending + line).strip()
        pending = ""
        if line:
            yield line


def from_requirements(root: Path, env: Env) -> tuple[list[Edge], list[Edge], dict[str, str], list[str]]:
    """Main and dev edges of the requirement files in ``root``; the ``==`` pins of dev files; the
    dev files' names."""
    files = requirement_files(root)
    dev_files = [f for f in files if is_dev_file(f, root)]
    main: list[Edge] = []
    dev: list[Edge] = []
    pins: dict[str, str] = {}
    for f in files:
        for line in read_requirements(f):
            edge = edge_of(line.req)
            if f in dev_files:
                dev.append(edge)
                pinned = [s.version for s in line.req.specifier if s.operator in ("==", "===")]
                if pinned:
                    pins[edge.name] = pinned[0]
            elif marker_holds(edge.marker, env):
                main.append(edge)
    return main, dev, pins, [str(f.relative_to(root)) for f in dev_files]


# --- the project ----------------------------------------------------------------------------------------
