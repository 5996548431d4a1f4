"""Which context entries a target reads: ``COPY``/``ADD`` sources and ``RUN --mount=type=bind`` sources,
read and resolved as BuildKit resolves them.

A source is a word (:mod:`stagecache.key.words`) read against the variables in force at its line
(:mod:`stagecache.key.scope`), cleaned like a path (``./src/``, ``/src`` and ``src`` are the same), then
resolved in the context the way BuildKit's copy does (``tonistiigi/fsutil/copy``):

* the part before the first component with a wildcard is followed through every symlink on the way,
  the last one included, inside the context (``..`` stops at its root, an absolute target starts from
  it: ``lnk -> /etc/passwd`` names the context's ``etc/passwd``), at most 255 links;
* the wildcard part is matched below that, component by component (Go's ``filepath.Match``: ``*`` stays
  in one component), without following symlinks; each match is then followed like a plain source;
* what a source ends at is copied whole: a directory with everything below it (symlinks inside are
  copied as links, not followed).

Every symlink passed on the way is read too (its target decides what is copied). A source that names
nothing, leads round a symlink loop, or cannot be read as a word is refused in one line with its
Dockerfile line, as the build would fail on it.
"""

from __future__ import annotations

import bisect
import posixpath
import re
from collections.abc import Iterable, Mapping
from typing import NamedTuple

from ..errors import DockerfileError
from . import dockerfile as df
from .patterns import compile_pattern
from .scope import Scope, read_mounts
from .walk import Entry

_REMOTE_GIT = re.compile(r"^(git@|git://|ssh://)|\.git(#.*)?$")
_HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")
MAX_LINKS = 255  # continuity's fs.RootPath
# BuildKit's predefined proxy args: any build arg of these names (in any case) reaches every RUN, declared
# or not; the docker CLI also adds the upper-case ones from its config.json (stagecache.key.proxies)
PROXY_ARGS = frozenset({"http_proxy", "https_proxy", "ftp_proxy", "no_proxy", "all_proxy"})

# The flags the Dockerfile frontend built into Docker 26 (BuildKit 0.13) accepts; the ones only its labs
# frontend has, and why stagecache refuses them.
FLAGS = {
    "COPY": frozenset({"from", "chown", "chmod", "link"}),
    "ADD": frozenset({"chown", "chmod", "link", "keep-git-dir", "checksum"}),
    "RUN": frozenset({"mount", "network", "security"}),
}
LABS_FLAGS = {
    "parents": "its sources are patterns that keep their directories, which stagecache does not read",
    "exclude": "the built-in frontend rejects it",
}


class Selection(NamedTuple):
    """The indexes of the entries read, the reasons the target cannot be cached, and whether what is
    read depends on the engine's frontend (a ``RUN --mount`` value BuildKit 0.8 takes literally)."""

    indexes: set[int]
    uncacheable: list[str]
    frontend_sensitive: bool


class _Missing(Exception):
    def __init__(self, why: str) -> None:
        self.why = why


class Tree:
    """The walked context, by path."""

    def __init__(self, entries: list[Entry]) -> None:
        self.entries = entries
        self.paths = [e.path for e in entries]
        self.at = {e.path: i for i, e in enumerate(entries)}

    def subtree(self, path: str) -> set[int]:
        """``path`` and everything below it ("" is the root)."""
        paths = self.paths
        if not path:
            return set(range(len(paths)))
        found = set(range(bisect.bisect_left(paths, path + "/"), bisect.bisect_left(paths, path + "0")))
        if path in self.at:
            found.add(self.at[path])
        return found

    def follow(self, path: str, links: set[int]) -> str:
        """``path`` with every symlink on it followed inside the context; the symlinks passed go into
        ``links``. Raises :class:`_Missing` when it names nothing."""
        parts = [p for p in path.split("/") if p]
        current: list[str] = []
        hops = 0
        via = ""
        while parts:
            part = parts.pop(0)
            if part == ".":
                continue
            if part == "..":
                if current:
                    current.pop()
                continue
            candidate = "/".join([*current, part])
            index = self.at.get(candidate)
            if index is None:
                raise _Missing(f"{candidate!r} does not exist{via}")
            entry = self.entries[index]
            if entry.kind == "symlink":
                links.add(index)
                hops += 1
                if hops > MAX_LINKS:
                    raise _Missing(
                        f"symlink loop at {candidate!r} (BuildKit gives up after {MAX_LINKS} links)"
                    )
                target = entry.link_target or ""
                via = f" (following {candidate} -> {target}: links resolve inside the context)"
                start = "/" if target.startswith("/") else "/" + "/".join(current) + "/"
                parts = [p for p in posixpath.normpath(start + target).split("/") if p] + parts
                current = []
                continue
            if parts and entry.kind != "dir":
                raise _Missing(f"{candidate!r} is not a directory{via}")
            current.append(part)
        return "/".join(current)


def clean(source: str) -> str:
    """A source as a path relative to the context ("" for the context itself)."""
    cleaned = posixpath.normpath("/" + source).lstrip("/")
    return "" if cleaned in (".", "") else cleaned


def has_wildcards(name: str) -> bool:
    """fsutil's ``containsWildcards``: ``*``, ``?`` or ``[`` not escaped by a backslash."""
    i = 0
    while i < len(name):
        if name[i] == "\\":
            i += 2
            continue
        if name[i] in "*?[":
            return True
        i += 1
    return False


def resolve(tree: Tree, source: str, *, wildcards: bool = True) -> set[int]:
    """The entries a cleaned ``source`` copies; raises :class:`_Missing` for a plain source that names
    nothing (a wildcard may match nothing: BuildKit allows that)."""
    links: set[int] = set()
    parts = source.split("/") if source else []
    split = next((i for i, p in enumerate(parts) if wildcards and has_wildcards(p)), len(parts))
    if split == len(parts):
        return tree.subtree(tree.follow(source, links)) | links
    try:
        base = tree.follow("/".join(parts[:split]), links)
    except _Missing:
        return links  # nothing to match in
    pattern = compile_pattern("/".join(parts[split:]))
    depth = len(parts) - split
    prefix = base + "/" if base else ""
    start = bisect.bisect_left(tree.paths, prefix) if prefix else 0
    found = set(links)
    for path in tree.paths[start:]:
        if prefix and not path.startswith(prefix):
            break
        rel = path[len(prefix) :]
        if rel.count("/") == depth - 1 and pattern.fullmatch(rel):
            try:
                found |= tree.subtree(tree.follow(path, found))
            except _Missing:
                continue  # a dangling link matched: BuildKit fails on it, not our concern here
    return found


def select(
    dockerfile: df.Dockerfile, stages: Iterable[df.Stage], entries: list[Entry], build_args: Mapping[str, str]
) -> Selection:
    """What the stages read of the context (their base stages' ONBUILD triggers included)."""
    tree = Tree(entries)
    selected: set[int] = set()
    uncacheable: list[str] = []
    sensitive = False
    for stage in stages:
        for ins, env in dockerfile.scopes(stage, build_args):
            sources: list[str] = []
            if ins.cmd in ("COPY", "ADD", "RUN"):
                check_flags(dockerfile, ins)
            if ins.cmd in ("COPY", "ADD") and ins.flag("from") is None:
                sources = [s for s in ins.args[:-1] if not _is_heredoc(s)]
            elif ins.cmd == "RUN":
                for mount in read_mounts(dockerfile, ins, env):
                    if mount.type == "bind" and not mount.from_:
                        sensitive = sensitive or mount.literal
                        selected |= _take(dockerfile, ins, tree, mount.source or "", env, wildcards=False)
            for raw in sources:
                word = dockerfile.read(raw, env, ins.line, f"{ins.cmd} source")
                if word.unset and not env.complete:
                    # a variable stagecache cannot see (the ENV of a base image it could not inspect):
                    # count the whole context rather than guess
                    selected.update(range(len(entries)))
                    continue
                source = word.text
                if source.startswith(("http://", "https://")):
                    if ins.cmd == "COPY":
                        raise DockerfileError(dockerfile.path, ins.line, f"COPY source {source!r}: "
                                              "a URL can be a source of ADD only")  # fmt: skip
                    if ins.flag("checksum") is None:
                        uncacheable.append(f"{dockerfile.path}:{ins.line}: ADD of a remote source {source!r}")
                    continue  # with --checksum, the instruction's text pins the content
                if ins.cmd == "ADD" and _REMOTE_GIT.search(source):
                    uncacheable.append(f"{dockerfile.path}:{ins.line}: ADD of a remote source {source!r}")
                    continue
                selected |= _take(dockerfile, ins, tree, source, env, unset=word.unset, raw=raw)
    return Selection(selected, uncacheable, sensitive)


def frontend_sensitive(
    dockerfile: df.Dockerfile, stages: Iterable[df.Stage], build_args: Mapping[str, str]
) -> bool:
    """Whether a ``RUN --mount`` value of the stages reads otherwise where BuildKit takes mount values
    literally (0.8) than where it expands them: then the key names the engine's frontend."""
    return any(
        mount.literal
        for stage in stages
        for ins, env in dockerfile.scopes(stage, build_args)
        if ins.cmd == "RUN"
        for mount in read_mounts(dockerfile, ins, env)
    )


def _take(
    dockerfile: df.Dockerfile,
    ins: df.Instruction,
    tree: Tree,
    source: str,
    env: Scope,
    *,
    wildcards: bool = True,
    unset: Iterable[str] = (),
    raw: str | None = None,
) -> set[int]:
    try:
        return resolve(tree, clean(source), wildcards=wildcards)
    except _Missing as missing:
        what = "RUN --mount source" if ins.cmd == "RUN" else f"{ins.cmd} source"
        shown = repr(source) if raw is None or raw == source else f"{raw!r} (read as {source!r})"
        names = sorted(unset)
        hint = f"; {', '.join(names)} {'is' if len(names) == 1 else 'are'} not set here" if names else ""
        raise DockerfileError(
            dockerfile.path,
            ins.line,
            f"{what} {shown} not found in the build context: {missing.why} "
            f"(missing, excluded by .dockerignore, or outside the context){hint}",
        ) from None


def _is_heredoc(word: str) -> bool:
    match = _HEREDOC.match(word)
    return match is not None and bool(match.group(3))


def check_flags(dockerfile: df.Dockerfile, ins: df.Instruction) -> None:
    """One line for a flag the engine's frontend does not have, or one stagecache does not key."""
    for item in ins.flags:
        name = item[2:].partition("=")[0]
        if name in FLAGS[ins.cmd]:
            continue
        if name in LABS_FLAGS and ins.cmd in ("COPY", "ADD"):
            if name == "exclude" and "syntax" in dockerfile.directives:
                continue  # a frontend of its choosing: what it excludes is still read, so still keyed
            raise DockerfileError(
                dockerfile.path, ins.line, f"{ins.cmd} --{name}: not keyed by stagecache ({LABS_FLAGS[name]})"
            )
        raise DockerfileError(
            dockerfile.path,
            ins.line,
            f"{ins.cmd} --{name}: not a flag of the Dockerfile frontend "
            f"(it has {', '.join('--' + f for f in sorted(FLAGS[ins.cmd]))})",
        )
