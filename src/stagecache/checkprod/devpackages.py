"""Which packages a project needs only for development, read from its lock file or declarations.

A dev-only package is one reachable only from dev groups, never from the main dependencies
(transitively, wherever the lock records the graph). Each format, first found wins:

    poetry.lock, Poetry 2    each package's ``groups``; a main group whose ``markers`` entry is false for
                             the image's Python does not count as main
    poetry.lock, Poetry 1    ``category = "dev"`` (Poetry < 1.5), plus the pyproject's dev tables;
                             a 1.5-1.8 lock records neither, so its dependency graph is walked from the
                             pyproject's main and dev tables
    uv.lock                  the graph from the workspace members' dependencies and dev groups
    pdm.lock                 each package's ``groups`` (PDM >= 2.11), else the graph from the pyproject
    declarations             PEP 735 ``[dependency-groups]``, ``[tool.poetry.group.*]``,
                             ``[tool.poetry.dev-dependencies]``, ``[tool.pdm.dev-dependencies]``,
                             ``[tool.uv] dev-dependencies``, dev-named extras, and the requirement files
                             ``requirements*dev*.txt``/``requirements/*dev*.txt`` (and test, lint, ...),
                             with their ``-r`` includes, less every other requirement file

Requirements are parsed with ``packaging`` as pip parses them; names compare canonicalised. Markers
are evaluated against the prod image's Python (``env``) on the main side only: a main edge that does
not apply there does not make a package main; a dev edge counts whatever its marker.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from packaging.markers import InvalidMarker, Marker, UndefinedComparison, UndefinedEnvironmentName
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..errors import ConfigError
from ..project.pyproject import read_toml

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
class Declared(NamedTuple):
    """What a pyproject declares: main and dev roots, and which tables said so."""

    main: list[Edge]
    dev: list[Edge]
    tables: list[str]


def _poetry_edges(table: Mapping[str, Any], *, with_optional: bool = True) -> list[Edge]:
    """A Poetry dependency table: ``name = "^1"``, ``name = {version, extras, markers, optional}``, or a
    list of such tables (multiple constraints). ``python`` is the interpreter, not a package."""
    out = []
    for name, spec in table.items():
        if name == "python":
            continue
        for one in spec if isinstance(spec, list) else [spec]:
            if isinstance(one, Mapping):
                if one.get("optional") and not with_optional:
                    continue
                extras = frozenset(canon(str(x)) for x in one.get("extras", []))
                marker = one.get("markers") or one.get("marker")
                out.append(Edge(canon(name), extras, str(marker) if marker else None))
            else:
                out.append(Edge(canon(name)))
    return out


def _dependency_groups(groups: Mapping[str, Any], name: str, seen: tuple[str, ...] = ()) -> list[object]:
    """A PEP 735 group's requirement strings, its ``{include-group = …}`` entries expanded."""
    out: list[object] = []
    for item in groups.get(name, []):
        if isinstance(item, Mapping) and "include-group" in item:
            included = str(item["include-group"])
            if included not in seen:
                out.extend(_dependency_groups(groups, included, (*seen, name)))
        else:
            out.append(item)
    return out


def declared(data: Mapping[str, Any]) -> Declared:
    """The main and dev dependencies a pyproject declares, in every table a tool keeps them in."""
    main: list[Edge] = []
    dev: list[Edge] = []
    tables: list[str] = []

    def side(name: str) -> list[Edge]:
        return main if canon(name) in MAIN_NAMES else dev

    project = data.get("project", {})
    main.extend(edges_of(project.get("dependencies", [])))
    for extra, reqs in project.get("optional-dependencies", {}).items():
        is_dev = canon(extra) in DEV_EXTRAS
        (dev if is_dev else main).extend(edges_of(reqs))
        if is_dev:
            tables.append(f"[project.optional-dependencies] {extra}")
    groups = data.get("dependency-groups", {})
    for group in groups:
        side(group).extend(edges_of(_dependency_groups(groups, group)))
    if groups:
        tables.append("[dependency-groups]")
    tool = data.get("tool", {})
    poetry = tool.get("poetry", {})
    main.extend(_poetry_edges(poetry.get("dependencies", {})))
    if poetry.get("dev-dependencies"):
        dev.extend(_poetry_edges(poetry["dev-dependencies"]))
        tables.append("[tool.poetry.dev-dependencies]")
    for group, conf in poetry.get("group", {}).items():
        side(group).extend(_poetry_edges(conf.get("dependencies", {})))
        tables.append(f"[tool.poetry.group.{group}]")
    for group, reqs in tool.get("pdm", {}).get("dev-dependencies", {}).items():
        side(group).extend(edges_of(reqs))
        tables.append(f"[tool.pdm.dev-dependencies] {group}")
    if tool.get("uv", {}).get("dev-dependencies"):
        dev.extend(edges_of(tool["uv"]["dev-dependencies"]))
        tables.append("[tool.uv] dev-dependencies")
    return Declared(main, dev, tables)


# --- lock files -----------------------------------------------------------------------------------------
def from_poetry_lock(lock: Mapping[str, Any], pyproject: Mapping[str, Any], env: Env) -> DevPackages:
    packages = lock.get("package", [])
    graph = _poetry_graph(packages)
    if any("groups" in p for p in packages):  # Poetry 2: each package records the groups that need it
        names = set()
        for p in packages:
            markers = p.get("markers")
            main_groups = [g for g in p.get("groups", []) if canon(g) in MAIN_NAMES]
            if isinstance(markers, Mapping):  # per-group markers: a main group may not apply here
                main_groups = [g for g in main_groups if marker_holds(markers.get(g), env)]
            if not main_groups:
                names.add(canon(p["name"]))
        source = "poetry.lock (each package's groups, Poetry 2)"
    elif any("category" in p for p in packages):  # Poetry < 1.5: "main" or "dev", computed over the graph
        names = {canon(p["name"]) for p in packages if p.get("category") == "dev"}
        decl = declared(pyproject)
        names |= {e.name for e in decl.dev} - {e.name for e in decl.main}
        source = 'poetry.lock (category = "dev", Poetry 1)'
    else:  # Poetry 1.5-1.8 (lock-version 2.0): neither; walk the graph from the pyproject's tables
        decl = declared(pyproject)
        names = graph.reach(decl.dev) - graph.reach(decl.main, env)
        source = "poetry.lock's dependency graph from pyproject.toml's main and dev groups (Poetry 1.5-1.8)"
    return DevPackages(names, source, {n: graph.version_of(n) for n in names if n in graph.versions})


def _poetry_graph(packages: Iterable[Mapping[str, Any]]) -> Graph:
    graph = Graph()
    for p in packages:
        extras = {name: edges_of(reqs) for name, reqs in p.get("extras", {}).items()}
        deps = _poetry_edges(p.get("dependencies", {}), with_optional=False)
        graph.add(p["name"], str(p.get("version", "")), deps, extras)
    return graph


def _uv_edges(items: Iterable[Mapping[str, Any]]) -> list[Edge]:
    return [
        Edge(canon(d["name"]), frozenset(canon(x) for x in d.get("extra", [])),
             d.get("marker"))
        for d in items
        if "name" in d
    ]  # fmt: skip


def from_uv_lock(lock: Mapping[str, Any], env: Env) -> DevPackages:
    """uv.lock: the workspace members (editable or virtual sources, or ``[manifest] members``) are the
    roots; their ``dependencies`` and runtime extras are main, their ``dev-dependencies`` groups and
    dev-named extras are dev."""
    graph = Graph()
    main: list[Edge] = []
    dev: list[Edge] = []
    members = {canon(m) for m in lock.get("manifest", {}).get("members", [])}
    for p in lock.get("package", []):
        deps = _uv_edges(p.get("dependencies", []))
        extras = {k: _uv_edges(v) for k, v in p.get("optional-dependencies", {}).items()}
        graph.add(p["name"], str(p.get("version", "")), deps, extras)
        source = p.get("source", {})
        if canon(p["name"]) in members or "editable" in source or "virtual" in source:
            main.append(Edge(canon(p["name"])))
            for extra, edges in extras.items():
                (dev if canon(extra) in DEV_EXTRAS else main).extend(edges)
            for group, edges in p.get("dev-dependencies", {}).items():
                (main if canon(group) in MAIN_NAMES else dev).extend(_uv_edges(edges))
    main_names = graph.reach(main, env)
    names = graph.reach(dev) - main_names
    return DevPackages(names, "uv.lock (reached only from dev groups)", _versions(graph, names))


def from_pdm_lock(lock: Mapping[str, Any], pyproject: Mapping[str, Any], env: Env) -> DevPackages:
    packages = lock.get("package", [])
    graph = Graph()
    for p in packages:
        deps = edges_of(p.get("dependencies", []))
        extras = p.get("extras", [])
        if extras:  # an entry per extras set: "name[extra]" depends on these beside "name" itself
            graph.add(p["name"], "", [], {x: deps for x in extras})
        else:
            graph.add(p["name"], str(p.get("version", "")), deps, {})
    if packages and all("groups" in p for p in packages):  # PDM >= 2.11 (inherit_metadata)
        names = {canon(p["name"]) for p in packages if not {canon(g) for g in p["groups"]} & MAIN_NAMES}
        source = "pdm.lock (each package's groups)"
    else:
        decl = declared(pyproject)
        names = graph.reach(decl.dev) - graph.reach(decl.main, env)
        source = "pdm.lock's dependency graph from pyproject.toml's groups"
    return DevPackages(names, source, _versions(graph, names))


def _versions(graph: Graph, names: Iterable[str]) -> dict[str, str]:
    return {n: graph.version_of(n) for n in names if n in graph.versions}


# --- requirement files ----------------------------------------------------------------------------------
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
def dev_only_packages(roots: Sequence[Path], extra: Iterable[str] = (), env: Env = None) -> DevPackages:
    """The dev-only packages of the first of ``roots`` (the prod image's context, then the project)
    that holds a lock or dev declarations; ``extra`` are ``[tool.stagecache] dev-packages``."""
    extra_names = {canon(n) for n in extra}
    tried = []
    for root in dict.fromkeys(roots):
        tried.append(str(root))
        found = from_directory(root, env)
        if found is not None:
            found.names |= extra_names
            if extra_names:
                found.source += " + [tool.stagecache] dev-packages"
            return found
    if extra_names:
        return DevPackages(extra_names, "[tool.stagecache] dev-packages")
    raise ConfigError(
        f"{', '.join(tried)}: cannot tell which packages are dev-only: no poetry.lock, uv.lock or pdm.lock, "
        "no dev group or dev extra in pyproject.toml, no requirements*dev*.txt or requirements/*dev*.txt; "
        "list them in [tool.stagecache] dev-packages"
    )


def from_directory(root: Path, env: Env) -> DevPackages | None:
    pyproject_path = root / "pyproject.toml"
    pyproject = read_toml(pyproject_path) if pyproject_path.is_file() else {}
    for lock_name in ("poetry.lock", "uv.lock", "pdm.lock"):
        lock_path = root / lock_name
        if not lock_path.is_file():
            continue
        lock = read_toml(lock_path)
        if lock_name == "poetry.lock":
            found = from_poetry_lock(lock, pyproject, env)
        elif lock_name == "uv.lock":
            found = from_uv_lock(lock, env)
        else:
            found = from_pdm_lock(lock, pyproject, env)
        found.files = [lock_name] + (["pyproject.toml"] if pyproject else [])
        return found
    decl = declared(pyproject)
    req_main, req_dev, pins, dev_files = from_requirements(root, env)
    dev = decl.dev + req_dev
    if not dev:
        return None
    main_names = {e.name for e in decl.main if marker_holds(e.marker, env)} | {e.name for e in req_main}
    names = {e.name for e in dev} - main_names
    sources = [f"pyproject.toml {', '.join(decl.tables)}"] if decl.dev else []
    sources += (
        [f"{', '.join(dev_files)} (with their -r includes), less the other requirement files"]
        if req_dev
        else []
    )
    files = (["pyproject.toml"] if decl.dev else []) + dev_files
    return DevPackages(names, "; ".join(sources), {n: v for n, v in pins.items() if n in names}, files)
