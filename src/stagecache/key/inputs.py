"""The inputs of a target: everything its image is built from, as a manifest.

A manifest lists exactly what the target's stages consume: their instructions, the build args they
declare, the identity of each external image they start from or copy from, and every context entry a
COPY, ADD or ``RUN --mount`` of those stages reads, after ``.dockerignore``. The key is the digest of
this manifest (``stagecache.key.digest``). Paths are relative to the context; absolute paths and mtimes never
enter it, so the same project in another folder gets the same key.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from operator import attrgetter
from pathlib import Path
from types import MappingProxyType
from typing import Any, NamedTuple

from blake3 import blake3

from ..errors import ConfigError, DockerfileError
from . import dockerfile as df
from . import secret
from .files import Uncached
from .ignore import IgnoreRules, find_ignore_file
from .ports import FileDigests, ImageIdentity, RowMemo
from .sources import PROXY_ARGS, frontend_sensitive, select
from .spec import DEFAULT_SECRET_PATTERNS, TargetSpec, redacted, secret_arg, secret_digest
from .walk import Entry, walk
from .words import Frontend

SCHEMA = 4  # 2: file digests are BLAKE3, file rows hashed outside the JSON (stagecache.key.digest);
# 3: compose build options that change what RUN steps see (extra_hosts, network, shm_size, ulimits,
# entitlements) are in the manifest; 4: words read as BuildKit reads them (stagecache.key.words), sources
# resolved through symlinks (key.sources), hard links, proxy build args, ONBUILD triggers of stages


class Inputs(NamedTuple):
    """A target's manifest. ``public`` may be shown and recorded; secret args appear in it only as
    ``<redacted xxxxxxxx>``, the first digits of their HMAC under the store's redaction key;
    ``secret_digests`` has the whole HMACs, which the key counts and nothing shows."""

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
    salt: Callable[[], bytes] | None = None,
    cli_build_args: Mapping[str, str] = MappingProxyType({}),
    frontend: Frontend | None = None,
) -> Inputs:
    """Compute the manifest of ``spec``. ``images`` gives an external image's identity and whether it
    has ONBUILD triggers; ``digests`` the files' content digests (default: each file hashed).

    ``salt`` gives the redaction key that secret build args are digested under (the store's; asked
    only when a secret arg is declared). Without it, a key of this process's own.

    With ``memo`` (the context's watcher), the file rows come from a memo when the watcher says
    nothing that matters changed since it was written, and the context is not walked.

    ``cli_build_args`` are the build args the docker CLI adds on its own (the proxies of its
    ``config.json``: :mod:`stagecache.key.proxies`), ``frontend`` how the engine's BuildKit reads words.
    """
    if not spec.context.is_dir():
        raise DockerfileError(str(spec.context), None, "build context is not a directory: check `context:`")
    shown = _display(spec.dockerfile, spec.context)
    dockerfile = df.load(spec.dockerfile, shown).configure(
        platform=spec.platform or platform, build_platform=platform, image_env=images.env,
        image_onbuild=images.onbuild, frontend=frontend,
    )  # fmt: skip
    build_args = {**{k: v for k, v in cli_build_args.items() if k not in spec.build_args}, **spec.build_args}
    stage = dockerfile.target(spec.stage)
    stages = dockerfile.reached(stage, build_args)
    # an undeclared build arg changes nothing, except the proxy args BuildKit gives every RUN unasked
    proxies = {name for name in build_args if name.lower().partition("@")[0] in PROXY_ARGS}
    declared = dockerfile.declared_args(stages) | proxies
    secret_patterns = tuple(secret_patterns)
    salt = salt or _process_salt

    args: dict[str, str] = {}
    secret_digests: dict[str, str] = {}
    for name in sorted(declared):
        if name not in build_args:
            continue  # a default is already part of the ARG instruction's text
        value = build_args[name]
        if secret_arg(name, value, secret_patterns):
            digest = secret_digest(value, salt())
            secret_digests[name] = digest
            args[name] = redacted(digest)
        else:
            args[name] = value

    ids: dict[str, str] = {}
    stage_records = []
    for stage_ in stages:
        for dep in dockerfile.dependencies(stage_, build_args):
            if dep.kind == "image" and dep.ref not in ids:  # refs come read already
                ids[dep.ref] = "scratch" if dep.ref == "scratch" else _image_id(images, dep, dockerfile)
        record = {
            "name": stage_.label,
            "from": dockerfile.base_ref(stage_, build_args),
            "instructions": [ins.normalised() for ins in stage_.instructions],
        }
        if stage_.platform is not None:  # FROM --platform=…
            record["platform"] = dockerfile.word(
                stage_.platform, dockerfile.global_values(build_args), stage_.line, "FROM --platform"
            )
        stage_records.append(record)

    rules = IgnoreRules.load(find_ignore_file(spec.context, spec.dockerfile))
    # ONBUILD triggers of an external base image run in our build and may copy anything: count it all.
    triggers = sorted(
        {
            r
            for s in stages
            if (r := dockerfile.base_ref(s, build_args)) in ids and r != "scratch" and images.onbuild(r)
        }
    )
    reused = None
    if memo is not None:
        masked = secret.masked_args(build_args, secret_patterns, salt)  # no secret in a memo's name
        memo_name = memo_key(_selection_material(dockerfile, stage, stages, rules, masked, triggers))
        reused = memo.reuse(memo_name, rules)
    if reused is not None:
        files, warnings, uncacheable = reused.files, reused.warnings, reused.uncacheable
    else:
        fifos: list[str] = []
        entries = walk(spec.context, rules, fifos=fifos)
        # The walk lists no FIFO; the selection sees the ones sent as entries of their own, so that a
        # directory, a wildcard or a name that takes one says so (and they are left out of the rows).
        phantoms = (Entry(path, "fifo", 0, 0) for path in fifos)
        seen = sorted([*entries, *phantoms], key=attrgetter("path")) if fifos else entries
        selected = select(dockerfile, stages, seen, build_args)
        selection, uncacheable = selected.indexes, selected.uncacheable
        if triggers:
            selection = set(range(len(seen)))
        chosen = [seen[i] for i in sorted(selection) if seen[i].kind != "fifo"]
        uncacheable += [
            f"{seen[i].path}: a FIFO the target copies; BuildKit copies it or drops it by version "
            "(Docker 26 keeps it, 20.10 drops it), so the image depends on the engine: remove it, or "
            "exclude it in .dockerignore"
            for i in sorted(selection)
            if seen[i].kind == "fifo"
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
    if frontend_sensitive(dockerfile, stages, build_args):  # a RUN --mount value read otherwise by 0.8
        public["frontend"] = list(dockerfile.frontend)
    mounted = None if triggers else secret.mounted_ids(dockerfile, stages, spec.build_args)
    if keyed := secret.keyed_secrets(spec.secrets, mounted):
        public["secrets"] = keyed  # ids and kinds only: a secret's value is assumed not to change the image
    if leak := secret.history_warning(dockerfile, stage, spec.build_args, secret_patterns):
        warnings = [*warnings, leak]
    return Inputs(public, secret_digests, uncacheable, dockerfile, stage, warnings)


def _process_salt() -> bytes:
    """A redaction key for callers that give none: random, this process's own."""
    global _PROCESS_SALT
    if _PROCESS_SALT is None:
        _PROCESS_SALT = os.urandom(32)
    return _PROCESS_SALT


_PROCESS_SALT: bytes | None = None


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
        tuple(dockerfile.frontend),
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


def _image_id(images: ImageIdentity, dep: df.Dependency, dockerfile: df.Dockerfile) -> str:
    """An external image's ID; one that the engine neither has nor can pull is named with its line."""
    try:
        return images.image_id(dep.ref)
    except ConfigError as exc:
        stages = ", ".join(s.name for s in dockerfile.stages if s.name) or "none named"
        raise DockerfileError(
            dockerfile.path,
            dep.line,
            f"{dep.ref!r} is no stage of this Dockerfile (stages: {stages}) "
            f"and no image the engine has: {exc}",
        ) from None


def _describe(entries: list[Entry], digests: FileDigests) -> list[list[Any]]:
    """``[path, kind, mode, detail]`` rows; detail is the BLAKE3 of a file, a link's target, or ""."""
    try:
        file_digests = digests.digests([(e.path, e.signature) for e in entries if e.kind == "file"])
    except OSError as exc:
        raise ConfigError(
            f"{exc.filename}: cannot read it ({exc.strerror}); docker could not send it either"
        ) from None
    first: dict[tuple[int, int], str] = {}  # a copied file's inode: the first path copied with it
    rows: list[list[Any]] = []
    for e in entries:
        if e.kind == "file" and e.inode is not None:
            leader = first.setdefault(e.inode, e.path)
            if leader != e.path:  # a hard link of a file copied before: BuildKit copies the link
                rows.append([e.path, "hardlink", oct(e.mode), leader])
                continue
        detail = file_digests[e.path] if e.kind == "file" else (e.link_target or "")
        rows.append([e.path, e.kind, oct(e.mode), detail])
    return rows
