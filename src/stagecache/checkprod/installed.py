"""What is installed in an image, and why a dev-only package is there.

The probe runs inside the image with its own Python and lists every ``*.dist-info`` and ``*.egg-info``
on the file system (not only those of the interpreter on PATH), each with its ``Requires-Dist``, its
``INSTALLER`` and whether it was ``REQUESTED``, after a line with the image's marker environment.

A package the lock has only for dev is one of three things in a prod image:

    base    the base image ships it (same name, version and place): not the project's doing
    tool    another distribution in the same environment that is not dev-only needs it (``pip install
            poetry`` brings virtualenv, platformdirs, …), or it is a copy vendored inside another
            package (``setuptools/_vendor/packaging-*.dist-info``): it is there for that tool, in the
            tool's version, not the lock's; reported, and not counted as a failure, because the
            project's dev group did not put it there (ship the tool or not: that is the Dockerfile's
            choice)
    leak    nothing else explains it: a dev dependency in the prod image, a failure
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..engine.base import Engine
from ..errors import CommandError, ConfigError
from .graph import DevPackages, canon, edge_of, marker_holds, parse_requirement

# Runs inside the image with its own Python (any 3.x, standard library only).
PROBE = r"""
import json, os, platform, sys
def fmt(v):
    s = "%d.%d.%d" % (v.major, v.minor, v.micro)
    return s if v.releaselevel == "final" else s + v.releaselevel[0] + str(v.serial)
print(json.dumps({
    "implementation_name": sys.implementation.name,
    "implementation_version": fmt(sys.implementation.version),
    "os_name": os.name, "platform_machine": platform.machine(), "platform_release": platform.release(),
    "platform_system": platform.system(), "platform_version": platform.version(),
    "python_full_version": platform.python_version(),
    "platform_python_implementation": platform.python_implementation(),
    "python_version": ".".join(platform.python_version_tuple()[:2]), "sys_platform": sys.platform}))
SKIP = {"/proc", "/sys", "/dev"}
def read(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""
found = []
for top, dirs, files in os.walk("/"):
    dirs[:] = [d for d in dirs if os.path.join(top, d) not in SKIP]
    for d in list(dirs):
        if not d.endswith((".dist-info", ".egg-info")):
            continue
        dirs.remove(d)
        where = os.path.join(top, d)
        egg = d.endswith(".egg-info")
        name = version = None
        requires = []
        for line in read(os.path.join(where, "PKG-INFO" if egg else "METADATA")).splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            if key == "Name" and name is None:
                name = value.strip()
            elif key == "Version" and version is None:
                version = value.strip()
            elif key == "Requires-Dist":
                requires.append(value.strip())
        if egg:
            for line in read(os.path.join(where, "requires.txt")).splitlines():
                if line.startswith("["):
                    break
                if line.strip():
                    requires.append(line.strip())
        if name:
            found.append([name, version or "", where, requires,
                          read(os.path.join(where, "INSTALLER")).strip(),
                          os.path.exists(os.path.join(where, "REQUESTED"))])
print(json.dumps(found))
"""


@dataclass
class Installed:
    name: str
    version: str
    location: str  # the .dist-info or .egg-info directory
    requires: list[str] = field(default_factory=list)  # Requires-Dist
    installer: str = ""  # INSTALLER: pip, uv, poetry, debian…
    requested: bool = False  # REQUESTED: asked for by name, not pulled in as a dependency

    @property
    def key(self) -> str:
        return canon(self.name)

    @property
    def environment(self) -> str:
        """The directory it is installed in (a site-packages): requirements are met within one."""
        return os.path.dirname(self.location)

    def label(self) -> str:
        return f"{self.name} {self.version}".strip()


def parse_probe(stdout: str) -> tuple[dict[str, str] | None, list[Installed]]:
    """The probe's output: the marker environment (if the first line holds it) and the distributions."""
    lines = [line for line in stdout.strip().splitlines() if line.strip()]
    if not lines:
        raise ValueError("the probe printed nothing")
    rows = json.loads(lines[-1])
    env = None
    if len(lines) > 1:
        try:
            first = json.loads(lines[-2])
        except ValueError:
            first = None
        env = {str(k): str(v) for k, v in first.items()} if isinstance(first, dict) else None
    out = []
    for row in rows:
        requires = [str(r) for r in row[3]] if len(row) > 3 else []
        installer = str(row[4]) if len(row) > 4 else ""
        requested = len(row) > 5 and bool(row[5])
        out.append(Installed(str(row[0]), str(row[1]), str(row[2]), requires, installer, requested))
    return env, out


def probe(engine: Engine, image: str) -> tuple[dict[str, str] | None, list[Installed]]:
    """Every distribution installed in ``image``, and its Python's marker environment."""
    for python in ("python3", "python"):
        done = engine.capture_in(image, python, ["-c", PROBE])
        if done.returncode == 0:
            try:
                return parse_probe(done.stdout)
            except (ValueError, IndexError, TypeError) as exc:
                raise ConfigError(f"{image}: could not read the list of installed packages: {exc}") from None
        if "executable file not found" not in done.stderr and "no such file" not in done.stderr.lower():
            raise CommandError(done.argv, done.returncode, done.stderr)
    raise ConfigError(f"{image}: no python3 or python in the image to list its packages with")


# --- why a dev-only package is there --------------------------------------------------------------------
@dataclass
class Finding:
    """A dev-only package found in the prod image, and what it is there."""

    package: Installed
    verdict: str  # "leak" (a failure), "tool" or "base" (reported, not counted)
    why: str  # where it likely came from, for a person
    lock_version: str | None = None  # what the lock pins for dev, when that differs from what is installed

    @property
    def counted(self) -> bool:
        return self.verdict == "leak"

    def as_json(self) -> dict[str, object]:
        p = self.package
        return {"name": p.name, "version": p.version, "location": p.location, "verdict": self.verdict,
                "why": self.why, "lock_version": self.lock_version, "installer": p.installer or None,
                "requested": p.requested}  # fmt: skip


def _requirers(present: Sequence[Installed], env: Mapping[str, str] | None) -> dict[int, list[Installed]]:
    """For each distribution (by index), the distributions of its environment that require it (each
    requirement's marker evaluated with no extra: a dependency only of an extra does not count)."""
    index = {(p.environment, p.key): i for i, p in enumerate(present)}
    out: dict[int, list[Installed]] = {}
    for q in present:
        for text in q.requires:
            req = parse_requirement(text)
            if req is None:
                continue
            edge = edge_of(req)
            if not marker_holds(edge.marker, env if env is not None else {}):
                continue
            i = index.get((q.environment, edge.name))
            if i is not None and present[i] is not q:
                out.setdefault(i, []).append(q)
    return out


def classify(
    dev: DevPackages,
    present: Sequence[Installed],
    env: Mapping[str, str] | None,
    *,
    base: Callable[[], Iterable[Installed]] = tuple,
    base_name: str = "the base image",
    installs: Callable[[str], str | None] = lambda name: None,
) -> list[Finding]:
    """The dev-only packages of ``present``, each with its verdict. ``base`` lists what the base image
    has (asked only when something dev-only is found); ``installs(name)`` says where the Dockerfile
    installs a tool, if it does."""
    dev_idx = [i for i, p in enumerate(present) if p.key in dev.names]
    if not dev_idx:
        return []
    in_base = {(b.key, b.version, b.location) for b in base()}
    requirers = _requirers(present, env)
    verdict: dict[int, str] = {}
    via: dict[int, Installed] = {}
    vendored: dict[int, str] = {}
    for i in dev_idx:
        p = present[i]
        if (p.key, p.version, p.location) in in_base:
            verdict[i] = "base"
        elif (owner := vendored_in(p.location)) is not None:
            verdict[i], vendored[i] = "tool", owner
    position = {id(p): i for i, p in enumerate(present)}
    changed = True
    while changed:  # a tool's dependencies, and theirs: until nothing more is explained
        changed = False
        for i in dev_idx:
            if i in verdict:
                continue
            for q in requirers.get(i, []):
                qi = position[id(q)]
                if q.key not in dev.names or verdict.get(qi) in ("tool", "base"):
                    verdict[i], via[i] = "tool", q
                    changed = True
                    break
    out = []
    for i in dev_idx:
        p = present[i]
        pinned = dev.versions.get(p.key)
        differs = pinned if pinned and pinned != p.version else None
        kind = verdict.get(i, "leak")
        if kind == "base":
            why = f"comes with {base_name}"
        elif i in vendored:
            why = f"vendored inside {vendored[i]}: its own copy, not an installed package"
        elif kind == "tool":
            why = _tool_why(i, via, requirers, position, installs)
        else:
            why = _leak_why(p, [q for q in requirers.get(i, []) if q.key in dev.names])
        if differs:
            why += f"; the lock pins {differs} for dev"
        out.append(Finding(p, kind, why, differs))
    out.sort(key=lambda f: (f.package.key, f.package.location))
    return out


def vendored_in(location: str) -> str | None:
    """The package a distribution is vendored in (``…/setuptools/_vendor/packaging-24.2.dist-info``)."""
    parts = location.split("/")
    for k in range(1, len(parts) - 1):
        if parts[k] in ("_vendor", "vendor", "_vendored", "vendored"):
            return parts[k - 1]
    return None


def _tool_why(
    i: int,
    via: Mapping[int, Installed],
    requirers: Mapping[int, Sequence[Installed]],
    position: Mapping[int, int],
    installs: Callable[[str], str | None],
) -> str:
    """ "installed with poetry 2.5.1 (through virtualenv 21.1, python-discovery 1.9)": up from the package
    through the dev-named packages the tool needs, and through what was not asked for by name, to the
    distribution that was (or that the Dockerfile installs)."""
    chain: list[Installed] = []
    q = via[i]
    seen = {i}
    while len(chain) < 10:
        qi = position[id(q)]
        if qi in seen:
            break
        seen.add(qi)
        if qi in via:  # a dev-named package there for the tool: on up
            chain.append(q)
            q = via[qi]
            continue
        ups = requirers.get(qi, [])
        if q.requested or installs(q.key) or not ups:
            break
        chain.append(q)  # pulled in by something else: on up, to what was asked for if anything was
        q = sorted(ups, key=lambda u: not u.requested)[0]
    why = f"installed with {q.label()}"
    if chain:
        why += f" (through {', '.join(c.label() for c in reversed(chain))})"
    hint = installs(q.key)
    if hint:
        why += f", {hint}"
    elif q.requested and q.installer:
        why += f", which {q.installer} installed on request"
    return why


def _leak_why(p: Installed, dev_requirers: Sequence[Installed]) -> str:
    by = f" by {p.installer}" if p.installer else ""
    if p.requested:
        return f"installed{by} on request"
    if dev_requirers:
        return f"installed{by} as a dependency of {', '.join(q.label() for q in dev_requirers)}"
    return f"installed{by}"


# --- where the Dockerfile installs a tool ---------------------------------------------------------------
INSTALLERS = {"pip", "pip3", "pipx", "uv"}
OPTIONS_WITH_VALUE = {"-r", "-c", "-e", "-i", "-t", "--requirement", "--constraint", "--editable",
                      "--index-url", "--extra-index-url", "--target", "--prefix", "--root", "-f",
                      "--find-links", "--python", "-p"}  # fmt: skip


def installs_in(texts: Iterable[tuple[str, int, str]]) -> Callable[[str], str | None]:
    """``installs(name)``: where one of the RUN commands (``(text, line, where)``) installs the package
    ``name`` with pip, uv or pipx: "which Dockerfile:12 installs with pip"."""
    found: dict[str, str] = {}
    for text, line, where in texts:
        for tool, names in _install_commands(text):
            for name in names:
                found.setdefault(name, f"which {where}:{line} installs with {tool}")
    return found.get


def _install_commands(text: str) -> list[tuple[str, list[str]]]:
    try:
        lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        words = list(lexer)
    except ValueError:
        return []
    out = []
    for i, word in enumerate(words):
        if word != "install" or i == 0:
            continue
        tool = os.path.basename(words[i - 1])
        if tool == "pip" and i >= 2 and os.path.basename(words[i - 2]) == "uv":
            tool = "uv pip"
        elif tool not in INSTALLERS and not re.fullmatch(r"pip3?(\.\d+)?", tool):
            continue
        names = []
        skip = False
        for arg in words[i + 1 :]:
            if arg in ("&&", "||", ";", "|", "&"):
                break
            if skip:
                skip = False
            elif arg.startswith("-"):
                skip = arg in OPTIONS_WITH_VALUE
            else:
                head = re.split(r"[\[=<>!~;@ ]", arg, maxsplit=1)[0]
                if head and "/" not in head and "$" not in head:
                    names.append(canon(head))
        out.append((tool, names))
    return out


def run_texts(
    dockerfile: Path, stage: str | None, build_args: Mapping[str, str], shown: str
) -> list[tuple[str, int, str]]:
    """The RUN commands (with heredocs) of the stages ``stage`` is built from."""
    from ..key import dockerfile as df

    try:
        parsed = df.load(dockerfile)
        stages = parsed.reached(parsed.target(stage), build_args)
    except Exception:  # noqa: BLE001 - a hint only: a Dockerfile that cannot be read gives none
        return []
    out = []
    for st in stages:
        for ins in st.instructions:
            if ins.cmd == "RUN":
                text = " ".join(ins.args) + "".join("\n" + body for _, body in ins.heredocs)
                out.append((text, ins.line, shown))
    return out
