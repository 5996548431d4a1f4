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

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..project.pyproject import read_toml
from .graph import DEV_EXTRAS, MAIN_NAMES, DevPackages, Edge, Env, Graph, canon, edges_of, marker_holds
from .requirements import from_requirements


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
