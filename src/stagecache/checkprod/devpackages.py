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

A table, array or ``[[package]]`` entry of the wrong shape is a :class:`ConfigError` naming the file and
the entry (never a traceback).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from ..errors import ConfigError
from ..project.pyproject import read_toml
from .graph import DEV_EXTRAS, MAIN_NAMES, DevPackages, Edge, Env, Graph, canon, edges_of, marker_holds
from .requirements import from_requirements

PYPROJECT = "pyproject.toml"


class Malformed(ConfigError):
    """An entry of ``file`` (a name relative to the project) of the wrong shape; ``from_directory`` says
    it again with the file's path."""

    def __init__(self, file: str, what: str) -> None:
        self.file, self.what = file, what
        super().__init__(f"{file}: {what}")


def _kind(value: object) -> str:
    """A value's TOML type, as a message names it."""
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a float"), (str, "a string"),
                       (list, "an array"), (Mapping, "a table")):  # fmt: skip
        if isinstance(value, kind):
            return name
    return "a date or time"


def _table(parent: Mapping[str, Any], key: str, file: str, where: str) -> Mapping[str, Any]:
    """``parent[key]``, a table (empty if absent)."""
    value = parent.get(key, {})
    if not isinstance(value, Mapping):
        raise Malformed(file, f"{where} must be a table, not {_kind(value)}")
    return value


def _array(parent: Mapping[str, Any], key: str, file: str, where: str) -> list[Any]:
    """``parent[key]``, an array (empty if absent)."""
    value = parent.get(key, [])
    if not isinstance(value, list):
        raise Malformed(file, f"{where} must be an array, not {_kind(value)}")
    return value


def _tables(parent: Mapping[str, Any], key: str, file: str, where: str) -> Mapping[str, Any]:
    """``parent[key]``, a table whose every value is a table."""
    table = _table(parent, key, file, where)
    for name, value in table.items():
        if not isinstance(value, Mapping):
            raise Malformed(file, f"{where} {name} must be a table, not {_kind(value)}")
    return table


def _arrays(parent: Mapping[str, Any], key: str, file: str, where: str) -> dict[str, list[Any]]:
    """``parent[key]``, a table whose every value is an array."""
    table = _table(parent, key, file, where)
    return {str(name): _array(table, name, file, f"{where} {name}") for name in table}


def _packages(lock: Mapping[str, Any], file: str) -> list[Mapping[str, Any]]:
    """A lock's ``[[package]]`` entries, each a table with a string ``name``."""
    packages = _array(lock, "package", file, "package")
    for number, p in enumerate(packages, 1):
        if not isinstance(p, Mapping):
            raise Malformed(file, f"[[package]] number {number} must be a table, not {_kind(p)}")
        if "name" not in p:
            raise Malformed(file, f"[[package]] number {number} has no name")
        if not isinstance(p["name"], str):
            raise Malformed(file, f"[[package]] number {number}: name must be a string")
    return packages


class Declared(NamedTuple):
    """What a pyproject declares: main and dev roots, and which tables said so."""

    main: list[Edge]
    dev: list[Edge]
    tables: list[str]


def _poetry_edges(
    parent: Mapping[str, Any], key: str, file: str, where: str, *, with_optional: bool = True
) -> list[Edge]:
    """A Poetry dependency table ``parent[key]``: ``name = "^1"``, ``name = {version, extras, markers,
    optional}``, or a list of such tables (multiple constraints). ``python`` is the interpreter."""
    out = []
    for name, spec in _table(parent, key, file, where).items():
        if name == "python":
            continue
        for one in spec if isinstance(spec, list) else [spec]:
            if isinstance(one, Mapping):
                if one.get("optional") and not with_optional:
                    continue
                asked = _array(one, "extras", file, f"{where} {name} extras")
                extras = frozenset(canon(str(x)) for x in asked)
                marker = one.get("markers") or one.get("marker")
                out.append(Edge(canon(name), extras, str(marker) if marker else None))
            else:
                out.append(Edge(canon(name)))
    return out


def _dependency_groups(groups: Mapping[str, Any], name: str, seen: tuple[str, ...] = ()) -> list[object]:
    """A PEP 735 group's requirement strings, its ``{include-group = …}`` entries expanded."""
    out: list[object] = []
    for item in _array(groups, name, PYPROJECT, f"[dependency-groups] {name}"):
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

    file = PYPROJECT
    project = _table(data, "project", file, "[project]")
    main.extend(edges_of(_array(project, "dependencies", file, "[project] dependencies")))
    optional = _arrays(project, "optional-dependencies", file, "[project.optional-dependencies]")
    for extra, reqs in optional.items():
        is_dev = canon(extra) in DEV_EXTRAS
        (dev if is_dev else main).extend(edges_of(reqs))
        if is_dev:
            tables.append(f"[project.optional-dependencies] {extra}")
    groups = _table(data, "dependency-groups", file, "[dependency-groups]")
    for group in groups:
        side(group).extend(edges_of(_dependency_groups(groups, group)))
    if groups:
        tables.append("[dependency-groups]")
    tool = _table(data, "tool", file, "[tool]")
    poetry = _table(tool, "poetry", file, "[tool.poetry]")
    main.extend(_poetry_edges(poetry, "dependencies", file, "[tool.poetry.dependencies]"))
    if poetry.get("dev-dependencies"):
        dev.extend(_poetry_edges(poetry, "dev-dependencies", file, "[tool.poetry.dev-dependencies]"))
        tables.append("[tool.poetry.dev-dependencies]")
    for group, conf in _tables(poetry, "group", file, "[tool.poetry.group]").items():
        where = f"[tool.poetry.group.{group}.dependencies]"
        side(group).extend(_poetry_edges(conf, "dependencies", file, where))
        tables.append(f"[tool.poetry.group.{group}]")
    pdm = _table(tool, "pdm", file, "[tool.pdm]")
    for group, reqs in _arrays(pdm, "dev-dependencies", file, "[tool.pdm.dev-dependencies]").items():
        side(group).extend(edges_of(reqs))
        tables.append(f"[tool.pdm.dev-dependencies] {group}")
    uv = _table(tool, "uv", file, "[tool.uv]")
    uv_dev = _array(uv, "dev-dependencies", file, "[tool.uv] dev-dependencies")
    if uv_dev:
        dev.extend(edges_of(uv_dev))
        tables.append("[tool.uv] dev-dependencies")
    return Declared(main, dev, tables)


# --- lock files -----------------------------------------------------------------------------------------
def from_poetry_lock(lock: Mapping[str, Any], pyproject: Mapping[str, Any], env: Env) -> DevPackages:
    packages = _packages(lock, "poetry.lock")
    graph = _poetry_graph(packages)
    if any("groups" in p for p in packages):  # Poetry 2: each package records the groups that need it
        names = set()
        for p in packages:
            markers = p.get("markers")
            groups = _array(p, "groups", "poetry.lock", f"package {p['name']} groups")
            main_groups = [g for g in groups if canon(str(g)) in MAIN_NAMES]
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
        where = f"package {p['name']}"
        optional = _arrays(p, "extras", "poetry.lock", f"{where} extras")
        extras = {name: edges_of(reqs) for name, reqs in optional.items()}
        deps = _poetry_edges(p, "dependencies", "poetry.lock", f"{where} dependencies", with_optional=False)
        graph.add(p["name"], str(p.get("version", "")), deps, extras)
    return graph


def _uv_edges(items: Iterable[object], where: str) -> list[Edge]:
    """uv's ``{ name, extra, marker }`` dependency tables (what names no package is left out)."""
    out = []
    for d in items:
        if isinstance(d, Mapping) and isinstance(d.get("name"), str):
            extras = frozenset(canon(str(x)) for x in _array(d, "extra", "uv.lock", f"{where} extra"))
            out.append(Edge(canon(d["name"]), extras, str(d["marker"]) if d.get("marker") else None))
    return out


def from_uv_lock(lock: Mapping[str, Any], env: Env) -> DevPackages:
    """uv.lock: the workspace members (editable or virtual sources, or ``[manifest] members``) are the
    roots; their ``dependencies`` and runtime extras are main, their ``dev-dependencies`` groups and
    dev-named extras are dev."""
    graph = Graph()
    main: list[Edge] = []
    dev: list[Edge] = []
    file = "uv.lock"
    manifest = _table(lock, "manifest", file, "[manifest]")
    members = {canon(str(m)) for m in _array(manifest, "members", file, "[manifest] members")}
    for p in _packages(lock, file):
        where = f"package {p['name']}"
        deps = _uv_edges(_array(p, "dependencies", file, f"{where} dependencies"), f"{where} dependencies")
        optional = _arrays(p, "optional-dependencies", file, f"{where} optional-dependencies")
        extras = {k: _uv_edges(v, f"{where} optional-dependencies {k}") for k, v in optional.items()}
        graph.add(p["name"], str(p.get("version", "")), deps, extras)
        source = _table(p, "source", file, f"{where} source")
        if canon(p["name"]) in members or "editable" in source or "virtual" in source:
            main.append(Edge(canon(p["name"])))
            for extra, edges in extras.items():
                (dev if canon(extra) in DEV_EXTRAS else main).extend(edges)
            for group, items in _arrays(p, "dev-dependencies", file, f"{where} dev-dependencies").items():
                (main if canon(group) in MAIN_NAMES else dev).extend(_uv_edges(items, f"{where} {group}"))
    main_names = graph.reach(main, env)
    names = graph.reach(dev) - main_names
    return DevPackages(names, "uv.lock (reached only from dev groups)", _versions(graph, names))


def from_pdm_lock(lock: Mapping[str, Any], pyproject: Mapping[str, Any], env: Env) -> DevPackages:
    file = "pdm.lock"
    packages = _packages(lock, file)
    graph = Graph()
    for p in packages:
        deps = edges_of(_array(p, "dependencies", file, f"package {p['name']} dependencies"))
        extras = _array(p, "extras", file, f"package {p['name']} extras")
        if extras:  # an entry per extras set: "name[extra]" depends on these beside "name" itself
            graph.add(p["name"], "", [], {str(x): deps for x in extras})
        else:
            graph.add(p["name"], str(p.get("version", "")), deps, {})
    if packages and all("groups" in p for p in packages):  # PDM >= 2.11 (inherit_metadata)
        names = {canon(p["name"]) for p in packages if not _groups(p, file) & MAIN_NAMES}
        source = "pdm.lock (each package's groups)"
    else:
        decl = declared(pyproject)
        names = graph.reach(decl.dev) - graph.reach(decl.main, env)
        source = "pdm.lock's dependency graph from pyproject.toml's groups"
    return DevPackages(names, source, _versions(graph, names))


def _groups(package: Mapping[str, Any], file: str) -> set[str]:
    return {canon(str(g)) for g in _array(package, "groups", file, f"package {package['name']} groups")}


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
    """The dev-only packages of ``root``, or None when it holds nothing to go by."""
    try:
        return _from_directory(root, env)
    except Malformed as exc:
        raise ConfigError(f"{root / exc.file}: {exc.what}") from None


def _from_directory(root: Path, env: Env) -> DevPackages | None:
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
