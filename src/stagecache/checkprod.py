"""Prove that a prod image holds no dev-only Python package.

Which packages are dev-only comes from the project: ``poetry.lock`` (each package records the groups
that need it, so transitive dev dependencies count too), else the dev groups of ``pyproject.toml``
(Poetry groups, PEP 735 ``[dependency-groups]``, ``dev``/``test`` extras), else ``requirements/dev*.txt``
less the other requirement files; ``[tool.stagecache] dev-packages`` adds names of its own. What is
installed is read inside the image: every ``*.dist-info`` and ``*.egg-info`` on its file system, not
only those of the interpreter on PATH.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine.base import Engine as Docker
from .errors import CommandError, ConfigError

if TYPE_CHECKING:
    from .build import Resolver
    from .project.settings import Settings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAIN_GROUPS = {"main", "default"}
DEV_EXTRAS = {"dev", "test", "tests", "testing", "lint", "typing", "docs"}

# Runs inside the image with its own Python: lists every installed distribution on the file system.
PROBE = r"""
import json, os
SKIP = {"/proc", "/sys", "/dev"}
found = []
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in SKIP]
    for d in list(dirs):
        if d.endswith((".dist-info", ".egg-info")):
            meta = os.path.join(top, d, "METADATA" if d.endswith(".dist-info") else "PKG-INFO")
            name = version = None
            try:
                with open(meta, encoding="utf-8", errors="replace") as fh:
                    for line in fh:
                        if line.startswith("Name:") and name is None:
                            name = line[5:].strip()
                        elif line.startswith("Version:") and version is None:
                            version = line[8:].strip()
                        elif not line.strip():
                            break
            except OSError:
                pass
            if name:
                found.append([name, version or "", os.path.join(top, d)])
            dirs.remove(d)
print(json.dumps(found))
"""


def normalise(name: str) -> str:
    """PEP 503 normalisation: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass
class DevPackages:
    names: set[str]
    source: str


@dataclass
class Installed:
    name: str
    version: str
    location: str


@dataclass
class Report:
    image: str
    dev_packages: DevPackages
    found: list[Installed] = field(default_factory=list)
    installed_count: int = 0

    @property
    def clean(self) -> bool:
        return not self.found


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return data


def _requirement_name(spec: str) -> str | None:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", spec)
    return normalise(match.group(1)) if match else None


def from_poetry_lock(path: Path) -> set[str] | None:
    """Dev-only packages of a lock whose entries record their groups (Poetry >= 1.5 lock format)."""
    data = _read_toml(path)
    packages = data.get("package", [])
    if not packages or not all("groups" in p for p in packages):
        return None
    return {normalise(p["name"]) for p in packages if not set(p["groups"]) & MAIN_GROUPS}


def from_pyproject(path: Path) -> set[str]:
    data = _read_toml(path)
    main: set[str] = set()
    dev: set[str] = set()
    project = data.get("project", {})
    main.update(n for n in map(_requirement_name, project.get("dependencies", [])) if n)
    for extra, reqs in project.get("optional-dependencies", {}).items():
        if extra in DEV_EXTRAS:
            dev.update(n for n in map(_requirement_name, reqs) if n)
    for reqs in data.get("dependency-groups", {}).values():
        dev.update(n for n in map(_requirement_name, [r for r in reqs if isinstance(r, str)]) if n)
    poetry = data.get("tool", {}).get("poetry", {})
    main.update(normalise(n) for n in poetry.get("dependencies", {}) if n != "python")
    dev.update(normalise(n) for n in poetry.get("dev-dependencies", {}))
    for group, conf in poetry.get("group", {}).items():
        if group not in MAIN_GROUPS:
            dev.update(normalise(n) for n in conf.get("dependencies", {}))
    return dev - main


def _requirements(path: Path, seen: set[Path] | None = None) -> set[str]:
    seen = seen if seen is not None else set()
    if path in seen or not path.is_file():
        return set()
    seen.add(path)
    names: set[str] = set()
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line.startswith(("-r ", "--requirement ")):
            names |= _requirements(path.parent / line.split(None, 1)[1], seen)
        elif line and not line.startswith(("#", "-")):
            name = _requirement_name(line)
            if name:
                names.add(name)
    return names


def from_requirements(root: Path) -> set[str] | None:
    files = sorted(root.glob("requirements/*.txt")) + sorted(root.glob("requirements*.txt"))
    dev_files = [f for f in files if re.search(r"(dev|test)", f.stem)]
    if not dev_files:
        return None
    dev = set().union(*(_requirements(f) for f in dev_files))
    main = set().union(*(_requirements(f) for f in files if f not in dev_files))
    return dev - main


def dev_only_packages(root: Path, extra: Iterable[str] = ()) -> DevPackages:
    extra_names = {normalise(n) for n in extra}
    lock = root / "poetry.lock"
    if lock.is_file():
        names = from_poetry_lock(lock)
        if names is not None:
            return DevPackages(names | extra_names, "poetry.lock (groups)")
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        names = from_pyproject(pyproject)
        if names:
            return DevPackages(names | extra_names, "pyproject.toml (dev groups and extras)")
    names = from_requirements(root)
    if names:
        return DevPackages(names | extra_names, "requirements/dev*.txt")
    if extra_names:
        return DevPackages(extra_names, "[tool.stagecache] dev-packages")
    raise ConfigError(
        f"{root}: cannot tell which packages are dev-only: no poetry.lock with groups, no dev group in "
        "pyproject.toml, no requirements/dev*.txt; list them in [tool.stagecache] dev-packages"
    )


def installed(docker: Docker, image: str) -> list[Installed]:
    for python in ("python3", "python"):
        done = docker.capture_in(image, python, ["-c", PROBE])
        if done.returncode == 0:
            rows = json.loads(done.stdout.strip().splitlines()[-1])
            return [Installed(str(r[0]), str(r[1]), str(r[2])) for r in rows]
        if "executable file not found" not in done.stderr and "no such file" not in done.stderr.lower():
            raise CommandError(done.argv, done.returncode, done.stderr)
    raise ConfigError(f"{image}: no python3 or python in the image to list its packages with")


def check(docker: Docker, image: str, dev: DevPackages) -> Report:
    present = installed(docker, image)
    found = [p for p in present if normalise(p.name) in dev.names]
    return Report(image, dev, sorted(found, key=lambda p: normalise(p.name)), len(present))


def sizes(docker: Docker, images: Sequence[str]) -> dict[str, int]:
    out = {}
    for image in images:
        info = docker.image_inspect(image)
        if info is not None:
            out[image] = info.size
    return out


@dataclass
class ProdCheck:
    """``check-prod``'s answer: the report on the prod image, and the images compared by size."""

    target: str  # the prod target
    report: Report
    images: dict[str, str]  # target name -> its key image: the prod target, then a dev target if any
    sizes: dict[str, int]  # image -> bytes


def check_prod(resolver: Resolver, docker: Docker, settings: Settings, given: str | None) -> ProdCheck:
    """Get the prod target's image (``given``, else as configured, else the one built for ``prod``),
    list the dev-only packages installed in it, and size it beside the first target built for ``dev``.

    The dev-only packages are read from the prod target's context when it holds a ``pyproject.toml``
    (a service in a monorepo), else from the project's root."""
    from .project import choose

    prod = choose.prod_target(settings, given)
    prod_image = resolver.resolve(prod, tags=[prod.image] if prod.image else []).image
    context = prod.spec.context
    root = context if (context / "pyproject.toml").exists() else settings.root
    dev = dev_only_packages(root, [str(n) for n in settings.tool.get("dev-packages", [])])
    report = check(docker, prod_image, dev)
    images = {prod.name: prod_image}
    dev_target = choose.dev_target(settings)
    if dev_target is not None and dev_target.name not in images:
        tags = [dev_target.image] if dev_target.image else []
        images[dev_target.name] = resolver.resolve(dev_target, tags=tags).image
    return ProdCheck(prod.name, report, images, sizes(docker, list(images.values())))
