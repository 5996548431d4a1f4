"""The dependency graph check-prod walks: requirements as edges (``packaging``), names canonicalised,
markers evaluated against the prod image's Python, and the main/dev reach of each package."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

Env = Mapping[str, str] | None  # a PEP 508 marker environment (the prod image's), or None: every marker holds

# Groups, extras and requirement files with these names are the project's own runtime, never dev.
MAIN_NAMES = frozenset({"main", "default", "prod", "production", "runtime", "release", "server"})
# Extras (``[project.optional-dependencies]``) with these names are dev; other extras are runtime features.
DEV_EXTRAS = frozenset(
    {"dev", "devel", "develop", "development", "test", "tests", "testing", "lint", "linting", "typing",
     "types", "mypy", "docs", "doc", "qa", "ci", "check", "checks", "style", "format", "coverage"}
)  # fmt: skip
# Requirement files: dev when the name (after "requirements") holds one of these words, or "dev"/"test".
DEV_FILE_WORDS = frozenset(
    {"lint", "linting", "docs", "doc", "typing", "local", "ci", "qa", "check", "style"}
)


@dataclass
class DevPackages:
    """The dev-only package names (canonical), where they were read, and the versions pinned for them."""

    names: set[str]
    source: str
    versions: dict[str, str] = field(default_factory=dict)  # name -> the version the lock pins for dev
    files: list[str] = field(default_factory=list)  # the files read, relative to the project


class Edge(NamedTuple):
    """One dependency: a canonical name, the extras asked for, and the marker that guards it."""

    name: str
    extras: frozenset[str] = frozenset()
    marker: str | None = None


def canon(name: str) -> str:
    """A package or extra name as PEP 503 compares them: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return str(canonicalize_name(name))


def marker_holds(marker: str | None, env: Env) -> bool:
    """Whether ``marker`` is true in ``env`` (no marker, no environment, or one that cannot be read: true,
    which keeps a package main rather than calling it dev by mistake)."""
    if not marker or env is None:
        return True
    try:
        return Marker(marker).evaluate({**env, "extra": ""})
    except (InvalidMarker, UndefinedComparison, UndefinedEnvironmentName):
        return True


def parse_requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text.strip())
    except InvalidRequirement:
        return None


def edge_of(req: Requirement) -> Edge:
    extras = frozenset(canon(x) for x in req.extras)
    return Edge(canon(req.name), extras, str(req.marker) if req.marker else None)


def edges_of(texts: Iterable[object]) -> list[Edge]:
    """PEP 508 strings as edges; what is not a requirement (a path, an include table) is left out."""
    out = []
    for text in texts:
        req = parse_requirement(text) if isinstance(text, str) else None
        if req is not None:
            out.append(edge_of(req))
    return out


class Graph:
    """A lock's dependency graph: each package's edges, and the edges each of its extras adds."""

    def __init__(self) -> None:
        self.deps: dict[str, list[Edge]] = {}
        self.extra_deps: dict[tuple[str, str], list[Edge]] = {}
        self.versions: dict[str, set[str]] = {}

    def add(
        self, name: str, version: str, deps: Iterable[Edge], extras: Mapping[str, Iterable[Edge]]
    ) -> None:
        name = canon(name)
        self.deps.setdefault(name, []).extend(deps)
        for extra, edges in extras.items():
            self.extra_deps.setdefault((name, canon(extra)), []).extend(edges)
        if version:
            self.versions.setdefault(name, set()).add(version)

    def reach(self, roots: Iterable[Edge], env: Env = None) -> set[str]:
        """Every package name reached from ``roots``; with ``env``, edges whose marker is false there are
        not followed."""
        names: set[str] = set()
        seen: set[tuple[str, str | None]] = set()
        stack = list(roots)
        while stack:
            edge = stack.pop()
            if not marker_holds(edge.marker, env):
                continue
            names.add(edge.name)
            for extra in (None, *sorted(edge.extras)):
                if (edge.name, extra) in seen:
                    continue
                seen.add((edge.name, extra))
                stack.extend(
                    self.deps.get(edge.name, [])
                    if extra is None
                    else self.extra_deps.get((edge.name, extra), [])
                )
        return names

    def version_of(self, name: str) -> str:
        return " or ".join(sorted(self.versions.get(name, ())))


# --- pyproject.toml declarations ------------------------------------------------------------------------
