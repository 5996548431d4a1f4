"""The inputs of a target: everything its image is built from, as a manifest.

A manifest lists exactly what the target's stages consume: their instructions, the build args they
declare, the identity of each external image they start from or copy from, and every context entry a
COPY, ADD or ``RUN --mount`` of those stages reads, after ``.dockerignore``. The key is the digest of
this manifest (``stagecache.key.digest``). Paths are relative to the context; absolute paths and mtimes never
enter it, so the same project in another folder gets the same key.
"""

from __future__ import annotations

import bisect
import hashlib
import posixpath
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

from blake3 import blake3

from ..errors import ConfigError, DockerfileError
from . import dockerfile as df
from .files import Uncached
from .ignore import IgnoreRules, find_ignore_file
from .patterns import compile_pattern
from .ports import FileDigests, ImageIdentity, RowMemo
from .spec import DEFAULT_SECRET_PATTERNS, TargetSpec, is_secret
from .walk import Entry, walk

SCHEMA = 3  # 2: file digests are BLAKE3, file rows hashed outside the JSON (stagecache.key.digest);
# 3: compose build options that change what RUN steps see (extra_hosts, network, shm_size, ulimits,
# entitlements) are in the manifest
_REMOTE = re.compile(r"^(https?://|git@|git://|ssh://)|\.git(#.*)?$")
_WILDCARD = re.compile(r"[*?\[]")


class Inputs(NamedTuple):
    """A target's manifest. ``public`` may be shown and recorded; secret args appear only as digests."""

    public: dict[str, Any]
    secret_digests: dict[str, str]
    uncacheable: list[str]
    dockerfile: df.Dockerfile
    stage: df.Stage
    warnings: list[str]


def collect(
    spec: TargetSpec,
    *,
    images: ImageIdentity,
    platform: str,
    digests: FileDigests | None = None,
    secret_patterns: Iterable[str] = DEFAULT_SECRET_PATTERNS,
    memo: RowMemo | None = None,
) -> Inputs:
    """Compute the manifest of ``spec``. ``images`` gives an external image's identity and whether it
    has ONBUILD triggers; ``digests`` the files' content digests (default: each file hashed).

    With ``memo`` (the context's watcher), the file rows come from a memo when the watcher says
    nothing that matters changed since it was written, and the context is not walked.
    """
    if not spec.context.is_dir():
        raise DockerfileError(str(spec.context), None, "build context is not a directory: check `context:`")
    shown = _display(spec.dockerfile, spec.context)
    dockerfile = df.load(spec.dockerfile, shown)
    stage = dockerfile.target(spec.stage)
    stages = dockerfile.reached(stage, spec.build_args)
    declared = dockerfile.declared_args(stages)
    secret_patterns = tuple(secret_patterns)

    args: dict[str, str] = {}
    secret_digests: dict[str, str] = {}
    for name in sorted(declared):
        if name not in spec.build_args:
            continue  # a default is already part of the ARG instruction's text
        value = spec.build_args[name]
        if is_secret(name, secret_patterns):
            digest = hashlib.sha256(value.encode()).hexdigest()
            secret_digests[name] = digest
            args[name] = f"<redacted {digest[:8]}>"
        else:
            args[name] = value

    ids: dict[str, str] = {}
    stage_records = []
    for stage_ in stages:
        for dep in dockerfile.dependencies(stage_, spec.build_args):
            if dep.kind == "image" and dep.ref not in ids:  # refs come substituted already
                ids[dep.ref] = "scratch" if dep.ref == "scratch" else images.image_id(dep.ref)
        record = {
            "name": stage_.label,
            "from": dockerfile.base_ref(stage_, spec.build_args),
            "instructions": [ins.normalised() for ins in stage_.instructions],
        }
        if stage_.platform is not None:  # FROM --platform=…
            record["platform"] = df.substitute(stage_.platform, dockerfile.global_values(spec.build_args))
        stage_records.append(record)

    rules = IgnoreRules.load(find_ignore_file(spec.context, spec.dockerfile))
    # ONBUILD triggers of an external base image run in our build and may copy anything: count it all.
    triggers = sorted(
        {
            r
            for s in stages
            if (r := dockerfile.base_ref(s, spec.build_args)) in ids and r != "scratch" and images.onbuild(r)
        }
    )
    reused = None
    if memo is not None:
        memo_name = memo_key(_selection_material(dockerfile, stage, stages, rules, spec.build_args, triggers))
        reused = memo.reuse(memo_name, rules)
    if reused is not None:
        files, warnings, uncacheable = reused.files, reused.warnings, reused.uncacheable
    else:
        fifos: list[str] = []
        entries = walk(spec.context, rules, fifos=fifos)
        selection, uncacheable = _select_sources(dockerfile, stages, entries, spec.build_args)
        if triggers:
            selection = set(range(len(entries)))
        chosen = [entries[i] for i in sorted(selection)]
        uncacheable += [
            f"{path}: a FIFO the target copies; BuildKit copies it or drops it by version (Docker 26 keeps "
            "it, 20.10 drops it), so the image depends on the engine: remove it, or exclude it in "
            ".dockerignore"
            for path in _copied_fifos(fifos, chosen)
        ]
        files = _describe(chosen, digests or Uncached(spec.context))
        if digests is not None and digests.changed:  # only then is the cache written: forget deleted files
            digests.retain(e.path for e in entries if e.kind == "file")
        warnings = [
            f"{e.path}: BuildKit lists this file but will not send its content under these .dockerignore "
            f"rules (the image gets an empty or stale copy); add `!{e.path}` as the ignore file's last line"
            for e in chosen
            if e.content_refused
        ]
        if memo is not None:
            memo.remember(memo_name, files, chosen, entries, fifos, warnings, uncacheable)

    public: dict[str, Any] = {
        "schema": SCHEMA,
        "name": spec.name,  # stagecache labels the image with it, so it is part of the image
        "target": stage.label,
        "directives": dockerfile.directives,
        "platform": spec.platform or platform,
        "global_args": [ins.normalised() for ins in dockerfile.global_arg_lines],
        "stages": stage_records,
        "args": args,
        "labels": dict(sorted(spec.labels.items())),
        "build_options": spec.options.keyed(),
        "images": ids,
        "files": files,
    }
    if all(identity == "scratch" for identity in ids.values()):
        # An external image's identity already tells the engines' image stores apart (a config digest
        # on the classic store, a manifest digest on containerd's); FROM scratch alone does not, and
        # an image saved from one store is not what the other loads.
        public["image_store"] = images.image_store()
    if uncacheable:
        public["uncacheable"] = uncacheable
    if triggers:
        public["onbuild"] = triggers
    return Inputs(public, secret_digests, uncacheable, dockerfile, stage, warnings)


def _selection_material(
    dockerfile: df.Dockerfile,
    target: df.Stage,
    stages: list[df.Stage],
    rules: IgnoreRules,
    build_args: Mapping[str, str],
    triggers: list[str],
) -> tuple[object, ...]:
    """Everything besides the context's content that decides which files a target reads, and how they
    are described: each reached stage's instructions with the variables in force at each (a base
    stage's ENV among them), the ignore rules, the ONBUILD triggers. A watcher's memo is keyed by it."""
    stage_scopes = [
        (s.label, dockerfile.base_ref(s, build_args),
         [(ins.line, ins.normalised(), sorted(values.items()))  # the line is in messages
          for ins, values in dockerfile.scopes(s, build_args)])
        for s in stages
    ]  # fmt: skip
    return (
        SCHEMA, dockerfile.path, target.label, [(p.text, p.exception) for p in rules.patterns], triggers,
        [ins.normalised() for ins in dockerfile.global_arg_lines], sorted(build_args.items()), stage_scopes,
    )  # fmt: skip


def memo_key(material: Iterable[object]) -> str:
    """The name of a memo: a digest of everything besides the context that decides a target's file rows."""
    return blake3(repr(tuple(material)).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _display(dockerfile: Path, context: Path) -> str:
    try:
        return str(dockerfile.resolve().relative_to(context.resolve().parent))
    except ValueError:
        return str(dockerfile)


def _select_sources(
    dockerfile: df.Dockerfile,
    stages: list[df.Stage],
    entries: list[Entry],
    build_args: Mapping[str, str],
) -> tuple[set[int], list[str]]:
    """Indexes of the context entries that the stages read, and reasons the target cannot be cached."""
    paths = [e.path for e in entries]
    selected: set[int] = set()
    uncacheable: list[str] = []
    for stage in stages:
        for ins, values in dockerfile.scopes(stage, build_args):
            sources: list[str] = []
            if ins.cmd in ("COPY", "ADD") and ins.flag("from") is None:
                sources = [s for s in ins.args[:-1] if not s.startswith("<<")]
            elif ins.cmd == "RUN":
                for mount in df.parse_mounts(ins):
                    if mount["type"] == "bind" and not mount.get("from"):
                        sources.append(mount.get("source", "."))
            for raw in sources:
                if not df.resolvable(raw, values):
                    # A variable we cannot see (ENV of an external base image, an automatic platform
                    # ARG) or an expansion we do not model: count the whole context rather than guess.
                    selected.update(range(len(paths)))
                    continue
                source = df.substitute(raw, values)
                if _REMOTE.search(source) and ins.cmd == "ADD":
                    uncacheable.append(f"{dockerfile.path}:{ins.line}: ADD of a remote source {source!r}")
                    continue
                found = _match(source, paths)
                if not found and _clean(source) and not _WILDCARD.search(source):
                    raise DockerfileError(
                        dockerfile.path,
                        ins.line,
                        f"{ins.cmd} source {source!r} not found in the build context "
                        "(missing, or excluded by .dockerignore)",
                    )
                selected.update(found)
    return _with_link_targets(selected, entries, paths), uncacheable


def _clean(source: str) -> str:
    cleaned = posixpath.normpath("/" + source).lstrip("/")
    return "" if cleaned in (".", "") else cleaned


def _match(source: str, paths: list[str]) -> set[int]:
    cleaned = _clean(source)
    found: set[int] = set()
    if _WILDCARD.search(cleaned):
        pattern = compile_pattern(cleaned)
        depth = cleaned.count("/")
        for path in paths:
            if path.count("/") == depth and pattern.fullmatch(path):
                found.update(_with_subtree(path, paths))
        return found
    return _with_subtree(cleaned, paths)


def _with_subtree(path: str, paths: list[str]) -> set[int]:
    """Indexes of ``path`` and of everything below it in the sorted ``paths`` ("" is the root)."""
    if not path:
        return set(range(len(paths)))
    found = set(range(bisect.bisect_left(paths, path + "/"), bisect.bisect_left(paths, path + "0")))
    idx = bisect.bisect_left(paths, path)
    if idx < len(paths) and paths[idx] == path:
        found.add(idx)
    return found


def _with_link_targets(selected: set[int], entries: list[Entry], paths: list[str]) -> set[int]:
    """A symlink that is copied may be followed by BuildKit: include what it points to, transitively.

    Targets resolve inside the context as BuildKit scopes them: ``..`` stops at the context's root.
    """
    out = set(selected)
    todo = [i for i in selected if entries[i].kind == "symlink"]
    while todo:
        entry = entries[todo.pop()]
        if entry.link_target is None:
            continue
        target = _clean(posixpath.join(posixpath.dirname(entry.path), entry.link_target))
        for i in _match(target, paths) - out:
            out.add(i)
            if entries[i].kind == "symlink":
                todo.append(i)
    return out


def _describe(entries: list[Entry], digests: FileDigests) -> list[list[Any]]:
    """``[path, kind, mode, detail]`` rows; detail is the BLAKE3 of a file, a link's target, or ""."""
    try:
        file_digests = digests.digests([(e.path, e.signature) for e in entries if e.kind == "file"])
    except OSError as exc:
        raise ConfigError(
            f"{exc.filename}: cannot read it ({exc.strerror}); docker could not send it either"
        ) from None
    rows: list[list[Any]] = []
    for e in entries:
        detail = file_digests[e.path] if e.kind == "file" else (e.link_target or "")
        rows.append([e.path, e.kind, oct(e.mode), detail])
    return rows


def _copied_fifos(fifos: list[str], chosen: list[Entry]) -> list[str]:
    """The FIFOs a target may copy: below a copied directory, or beside a copied entry (a wildcard in
    that directory may have taken it; the walk lists no FIFO for a wildcard to match). Over-counting
    costs a cache hit; under-counting would be a false hit."""
    if not fifos:
        return []
    dirs = {e.path for e in chosen if e.kind == "dir"}
    beside = {posixpath.dirname(e.path) for e in chosen}
    copied = []
    for path in fifos:
        parent = posixpath.dirname(path)
        above = [path[:i] for i, ch in enumerate(path) if ch == "/"]
        if parent in beside or any(a in dirs for a in above):
            copied.append(path)
    return copied
