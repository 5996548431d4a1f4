"""Build a case's project before and after one mutation, and judge the key by the two images.

A :class:`Case` is a small project (a Dockerfile, a context described file by file, build args, the
target stage) and one :class:`Change` to it. :func:`execute` materializes every distinct variant
(cases that share a project share its build), computes each variant's key in-process as
``stagecache build`` would, builds each one for real (``docker buildx build --no-cache --load``, one
at a time), reads every image back with one ``docker save`` and compares, per case:

- the image: every file (path, kind, permission bits, uid/gid, content digest, link target, which
  paths are hard links of each other, xattrs) and the config (Env, Cmd, Entrypoint, WorkingDir, User,
  ExposedPorts, Labels, Volumes, Healthcheck, StopSignal, OnBuild, Shell, author, os/architecture);
- the key: the same string or not.

Same key and a different image is a **false hit**, the bug stagecache exists to prevent. A different
key and the same image is a false miss (a needless rebuild), counted. A key refused (one line, exit 2)
for a project docker builds is a **false refusal**; a project the engine rejects (an older BuildKit) is
reported as *rejected* with the engine's own line. Mtimes are never compared: BuildKit keeps them out
of the cache's identity, and so does the key.

Images are tagged ``stagecache-conformance-<run>:<variant>`` and labelled ``org.stagecache.test``; all
are removed at the end. Contexts get unique directory names, because BuildKit 0.8 reuses a received
file whose size and mtime match what it cached under the same directory name.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import posixpath
import subprocess
import tarfile
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeAlias, Union

from stagecache.app import resolver_for
from stagecache.engine.docker import Docker
from stagecache.errors import StagecacheError
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target
from stagecache.refs import LABEL_PREFIX

TEST_LABEL = f"{LABEL_PREFIX}.test"


# --- what a project is made of ----------------------------------------------------------------------------
class File(NamedTuple):
    """A regular file. ``mtime``/``owner`` let a change touch or chown it without changing its bytes."""

    content: str | bytes = ""
    mode: int = 0o644
    mtime: int | None = None
    owner: tuple[int, int] | None = None


class Link(NamedTuple):
    """A symbolic link (its target string, as written)."""

    target: str


class HardLink(NamedTuple):
    """Another name for the file at ``of`` (made after it)."""

    of: str


class Dir(NamedTuple):
    mode: int = 0o755


class Fifo(NamedTuple):
    """A named pipe (BuildKit 0.8 drops one from a copy; later versions copy it)."""

    mode: int = 0o644


class Tar(NamedTuple):
    """A tar archive of (name, content) members with fixed metadata (for ADD's extraction)."""

    members: tuple[tuple[str, str], ...]


Node: TypeAlias = Union[str, File, Link, HardLink, Dir, Fifo, Tar]  # noqa: UP007 - a runtime alias on 3.10

# Words replaced in every Dockerfile before it is keyed and built (set up once per run).
TOKENS = ("@BASE@", "@BASE_ALIAS@", "@ONBUILD_BASE@", "@HTTP@")


@dataclass(frozen=True)
class Project:
    """A Dockerfile, its context and how it is built. ``dockerfile_at`` is relative to the context
    (``../Dockerfile``: outside it). ``docker_config`` is a ``config.json`` for ``DOCKER_CONFIG``;
    ``secrets`` are ``--secret id=…`` values, given to the build and never to the key."""

    dockerfile: str
    files: Mapping[str, Node] = field(default_factory=dict)
    stage: str | None = None
    args: Mapping[str, str] = field(default_factory=dict)
    dockerfile_at: str = "Dockerfile"
    docker_config: str | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)

    def ident(self) -> str:
        data = repr(
            (
                self.dockerfile,
                sorted((k, repr(v)) for k, v in self.files.items()),
                self.stage,
                sorted(self.args.items()),
                self.dockerfile_at,
                self.docker_config,
                sorted(self.secrets.items()),
            )
        )
        return hashlib.sha256(data.encode()).hexdigest()[:16]


_UNSET: Any = object()


@dataclass(frozen=True)
class Change:
    """One mutation of a project: files replaced, added (a node) or removed (None); the Dockerfile
    rewritten (``edit``: (old, new) substring replacements, each must match) or replaced; args, stage,
    docker config or secrets replaced."""

    what: str
    files: Mapping[str, Node | None] = field(default_factory=dict)
    edit: tuple[tuple[str, str], ...] = ()
    dockerfile: str | None = None
    args: Mapping[str, str] | None = None
    stage: Any = _UNSET
    docker_config: Any = _UNSET
    secrets: Mapping[str, str] | None = None

    def apply(self, project: Project) -> Project:
        text = self.dockerfile if self.dockerfile is not None else project.dockerfile
        for old, new in self.edit:
            if old not in text:
                raise ValueError(f"change {self.what!r}: {old!r} is not in the Dockerfile")
            text = text.replace(old, new, 1)
        files = dict(project.files)
        for path, node in self.files.items():
            if node is None:
                files.pop(path, None)
            else:
                files[path] = node
        return Project(
            dockerfile=text,
            files=files,
            stage=project.stage if self.stage is _UNSET else self.stage,
            args=project.args if self.args is None else self.args,
            dockerfile_at=project.dockerfile_at,
            docker_config=project.docker_config if self.docker_config is _UNSET else self.docker_config,
            secrets=project.secrets if self.secrets is None else self.secrets,
        )


@dataclass(frozen=True)
class Case:
    """One check: ``project`` and ``change`` built for real; what ``covers`` names is the instruction
    or flag under test. ``image`` says what the change does to the image ("changes"/"same"; None: it
    depends on the engine), so that a case cannot silently stop exercising what it claims.

    ``needs``: a feature an older BuildKit rejects (the case is skipped there, with the engine's line).
    ``false_hit``: a known false hit being fixed (xfail, strict). ``false_refusal``: a refusal being
    fixed (xfail, strict). ``refusal``: why stagecache may refuse this project although docker builds it.
    ``uncacheable``: stagecache must say the target is always built (its input is remote).
    ``regression``: the false hit or refusal this case reproduced before it was fixed."""

    id: str
    covers: str
    project: Project
    change: Change
    image: str | None = "changes"
    needs: str | None = None
    false_hit: str | None = None
    false_refusal: str | None = None
    refusal: str | None = None
    uncacheable: bool = False
    regression: str | None = None

    @functools.cached_property
    def after(self) -> Project:
        return self.change.apply(self.project)


# --- what came out ------------------------------------------------------------------------------------------
# path -> (kind, mode, uid, gid, content digest, link target, device, xattrs, hard-link peers)
Files = dict[str, tuple[Any, ...]]


class Snapshot(NamedTuple):
    files: Files
    config: dict[str, Any]


class Variant(NamedTuple):
    """One project as keyed and as built."""

    ident: str
    key: str | None = None
    refused: str | None = None  # "exit N: message" when the key was refused
    uncacheable: tuple[str, ...] = ()
    crashed: str | None = None  # anything but a StagecacheError from the key: a bug
    build_error: str | None = None  # the engine's line when docker refused to build it
    snapshot: Snapshot | None = None
    build_seconds: float = 0.0


# Verdicts, per case.
CORRECT_HIT = "same key, same image"
CORRECT_MISS = "new key, new image"
FALSE_HIT = "FALSE HIT"
FALSE_MISS = "false miss"
FALSE_REFUSAL = "false refusal"
REJECTED = "rejected by the engine"
UNCACHEABLE = "uncacheable"
CRASHED = "key crashed"


@dataclass
class Result:
    case: Case
    before: Variant
    after: Variant
    verdict: str
    detail: str = ""
    image_changed: bool | None = None
    key_changed: bool | None = None

    def key_outcome(self) -> str:
        """What the key said, before and after: "keyed", "uncacheable" or "refused: <message>"."""
        for v in (self.before, self.after):
            if v.refused is not None:
                return f"refused: {v.refused}"
            if v.crashed is not None:
                return f"crashed: {v.crashed}"
        return "uncacheable" if self.before.uncacheable or self.after.uncacheable else "keyed"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.case.id,
            "covers": self.case.covers,
            "change": self.case.change.what,
            "verdict": self.verdict,
            "detail": self.detail,
            "image_changed": self.image_changed,
            "key_changed": self.key_changed,
            "key": self.key_outcome(),
            "known": self.case.false_hit or self.case.false_refusal or self.case.refusal,
            "regression": self.case.regression,
        }


def judge(case: Case, before: Variant, after: Variant) -> Result:
    for v in (before, after):
        if v.crashed:
            return Result(case, before, after, CRASHED, v.crashed)
    for v in (before, after):
        if v.build_error is not None:
            return Result(case, before, after, REJECTED, v.build_error)
    for v in (before, after):
        if v.refused is not None:
            return Result(case, before, after, FALSE_REFUSAL, v.refused)
    assert before.snapshot is not None
    assert after.snapshot is not None
    image_changed = before.snapshot != after.snapshot
    key_changed = before.key != after.key
    if before.uncacheable or after.uncacheable:
        why = "; ".join(before.uncacheable or after.uncacheable)
        return Result(case, before, after, UNCACHEABLE, why, image_changed, key_changed)
    if image_changed and not key_changed:
        verdict = FALSE_HIT
    elif key_changed and not image_changed:
        verdict = FALSE_MISS
    else:
        verdict = CORRECT_MISS if image_changed else CORRECT_HIT
    detail = describe_difference(before.snapshot, after.snapshot) if image_changed else ""
    return Result(case, before, after, verdict, detail, image_changed, key_changed)


def describe_difference(a: Snapshot, b: Snapshot, limit: int = 3) -> str:
    parts: list[str] = []
    for name in sorted(set(a.config) | set(b.config)):
        if a.config.get(name) != b.config.get(name):
            parts.append(f"config {name}: {a.config.get(name)!r} -> {b.config.get(name)!r}")
    paths = sorted(p for p in set(a.files) | set(b.files) if a.files.get(p) != b.files.get(p))
    for path in paths[:limit]:
        parts.append(f"/{path}: {_short(a.files.get(path))} -> {_short(b.files.get(path))}")
    if len(paths) > limit:
        parts.append(f"and {len(paths) - limit} more paths")
    return "; ".join(parts)


def _short(entry: tuple[Any, ...] | None) -> str:
    if entry is None:
        return "absent"
    kind, mode, uid, gid, digest, link, _dev, xattrs, peers = entry
    text = f"{kind} {mode:o} {uid}:{gid}"
    if digest:
        text += f" {digest[:8]}"
    if link:
        text += f" -> {link}"
    if xattrs:
        text += f" xattrs {len(xattrs)}"
    if peers:
        text += f" linked with {','.join(peers)}"
    return text


# --- materializing ------------------------------------------------------------------------------------------
def materialize(project: Project, root: Path, tokens: Mapping[str, str]) -> tuple[Path, Path]:
    """Write ``project`` under ``root``; returns (context, Dockerfile)."""
    context = root / f"ctx-{uuid.uuid4().hex[:12]}"
    context.mkdir(parents=True)
    dockerfile = (context / project.dockerfile_at).resolve()
    dockerfile.parent.mkdir(parents=True, exist_ok=True)
    dockerfile.write_text(substitute(project.dockerfile, tokens))
    later: list[tuple[Path, Node]] = []
    for rel, node in sorted(project.files.items()):
        path = context / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(node, str):
            node = File(node)
        if isinstance(node, File):
            data = node.content.encode() if isinstance(node.content, str) else node.content
            path.write_bytes(data)
            path.chmod(node.mode)
            if node.mtime is not None:
                os.utime(path, (node.mtime, node.mtime))
            if node.owner is not None:
                os.chown(path, *node.owner)
        elif isinstance(node, Dir):
            path.mkdir(exist_ok=True)
            later.append((path, node))  # its mode last: a read-only directory can still be filled
        elif isinstance(node, Link):
            path.symlink_to(node.target)
        elif isinstance(node, Fifo):
            os.mkfifo(path, node.mode)
        elif isinstance(node, Tar):
            with tarfile.open(path, "w") as tar:
                for name, content in node.members:
                    info = tarfile.TarInfo(name)
                    info.size = len(content.encode())
                    info.mtime = 1_600_000_000
                    info.mode = 0o644
                    tar.addfile(info, io.BytesIO(content.encode()))
        elif isinstance(node, HardLink):
            later.append((path, node))
    for path, node in later:
        if isinstance(node, HardLink):
            os.link(context / node.of, path)
    for path, node in sorted(later, key=lambda item: -len(item[0].parts)):
        if isinstance(node, Dir):
            path.chmod(node.mode)
    return context, dockerfile


def substitute(text: str, tokens: Mapping[str, str]) -> str:
    for token, value in tokens.items():
        text = text.replace(token, value)
    return text


@contextlib.contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- one run ------------------------------------------------------------------------------------------------
BASE_DOCKERFILE = """\
FROM python:3.11-slim AS full
RUN set -e; mkdir -p /out/bin /out/etc /out/tmp; chmod 1777 /out/tmp; \\
    for b in sh cat ls cp ln mkdir chmod touch id env rm; do cp "$(command -v $b)" /out/bin/; done; \\
    for lib in $(ldd /out/bin/* | grep -o '/[^ :]*[.]so[^ :]*' | sort -u); do \\
      cp -L --parents "$lib" /out; done; \\
    cp /etc/passwd /etc/group /out/etc/
FROM scratch
COPY --from=full /out/ /
ENV PATH=/bin
"""
ONBUILD_DOCKERFILE = "FROM @BASE@\nONBUILD COPY trig.txt /trig.txt\nONBUILD RUN echo triggered > /ran\n"


READ_BATCH = 40  # images read back with one docker save


class SetupError(RuntimeError):
    pass


class Run:
    """One run of cases against the engine DOCKER_HOST names (``engine``)."""

    def __init__(self, engine: Docker, workdir: Path) -> None:
        self.engine = engine
        self.workdir = workdir
        self.run_id = uuid.uuid4().hex[:10]
        self.repository = f"stagecache-conformance-{self.run_id}"
        self.tokens: dict[str, str] = {}
        self._tags: list[str] = []  # every tag this run made, removed at the end (children first)
        self._http: http.server.ThreadingHTTPServer | None = None
        self.builds = 0
        self.timings: dict[str, float] = {}

    # --- set-up ---------------------------------------------------------------------------------------
    def __enter__(self) -> Run:
        started = time.monotonic()
        try:
            base = f"{self.repository}:base"
            self._build_aux(BASE_DOCKERFILE, base)
            alias = f"{self.repository}:base-alias"
            _docker(["tag", base, alias])
            self._tags.append(alias)
            self.tokens["@BASE@"] = base
            self.tokens["@BASE_ALIAS@"] = alias
            onbuild = f"{self.repository}:onbuild"
            self._build_aux(substitute(ONBUILD_DOCKERFILE, self.tokens), onbuild)
            self.tokens["@ONBUILD_BASE@"] = onbuild
            self.tokens["@HTTP@"] = self._serve()
        except BaseException:
            self.close()
            raise
        self.timings["setup"] = time.monotonic() - started
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        listed = _docker(
            ["image", "ls", "--format", "{{.Repository}}:{{.Tag}}", self.repository], check=False
        )
        made = set(self._tags)
        left = [t for t in listed.stdout.split() if t not in made]  # a run stopped half-way
        _remove(left)
        for tag in reversed(self._tags):  # children first
            _remove([tag])
        self._tags.clear()

    def _build_aux(self, text: str, tag: str) -> None:
        root = Path(tempfile.mkdtemp(prefix="aux-", dir=self.workdir))
        # --no-cache: a base of its own per run, so that no step of this run has the cache key of a
        # step another run builds at the same time (BuildKit would merge the two).
        context, dockerfile = materialize(Project(text, {"trig.txt": "t\n"}), root, self.tokens)
        done = subprocess.run(
            ["docker", "buildx", "build", "--no-cache", "--load", "-q", "-t", tag,
             "--label", f"{TEST_LABEL}=conformance", "-f", str(dockerfile), str(context)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise SetupError(f"could not build {tag}: {_engine_line(done.stderr)}")
        self._tags.append(tag)

    def _serve(self) -> str:
        """A loopback HTTP server for ``ADD http://…`` (the daemon fetches it from the host's network)."""
        root = self.workdir / "http"
        root.mkdir(exist_ok=True)
        (root / "remote.txt").write_text("remote\n")
        (root / "other.txt").write_text("other\n")
        handler = functools.partial(_QuietHandler, directory=str(root))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self._http = server
        return f"http://127.0.0.1:{server.server_address[1]}"

    # --- the cases ------------------------------------------------------------------------------------
    def execute(self, cases: Sequence[Case], progress: Callable[[str], None] | None = None) -> list[Result]:
        say = progress or (lambda _line: None)
        projects: dict[str, Project] = {}
        for case in cases:
            for project in (case.project, case.after):
                projects.setdefault(project.ident(), project)
        started = time.monotonic()
        placed = {ident: self._place(ident, p) for ident, p in projects.items()}
        keyed = {ident: self._key(ident, projects[ident], *placed[ident]) for ident in projects}
        self.timings["keys"] = time.monotonic() - started
        say(f"{len(cases)} cases, {len(projects)} distinct projects keyed")

        started = time.monotonic()
        # One build at a time: BuildKit merges a step of two concurrent builds when their cache keys
        # match, even with --no-cache, and a cache key leaves out what the key must not (hard links,
        # the proxy args), so a concurrent "after" can get the "before"'s layer. Reading images back
        # and removing them (~0.25 s an image on the containerd store) goes on beside the builds.
        built: dict[str, tuple[str | None, float]] = {}
        snapshots: dict[str, Snapshot] = {}
        batch: dict[str, str] = {}
        with concurrent.futures.ThreadPoolExecutor(max_workers=1) as reader:
            reads = []
            for n, ident in enumerate(projects, 1):
                built[ident] = self._build(ident, projects[ident], *placed[ident])
                if built[ident][0] is None:
                    batch[ident] = self._tag(ident)
                if batch and (len(batch) >= READ_BATCH or n == len(projects)):
                    reads.append(reader.submit(self._read_and_remove, batch))
                    batch = {}
            for read in reads:
                snapshots.update(read.result())
        self.builds += len(projects)
        self.timings["builds"] = time.monotonic() - started
        say(f"{len(projects)} builds in {self.timings['builds']:.0f} s")

        variants: dict[str, Variant] = {}
        for ident, variant in keyed.items():
            error, seconds = built[ident]
            variants[ident] = variant._replace(
                build_error=error, snapshot=snapshots.get(ident), build_seconds=seconds
            )
        return [judge(c, variants[c.project.ident()], variants[c.after.ident()]) for c in cases]

    def _place(self, ident: str, project: Project) -> tuple[Path, Path, Path]:
        root = self.workdir / f"v-{ident}"
        context, dockerfile = materialize(project, root, self.tokens)
        secrets = root / "secrets"
        secrets.mkdir()
        for name, value in project.secrets.items():
            (secrets / name).write_text(value)
        config = root / "docker-config"
        if project.docker_config is not None:
            config.mkdir()
            (config / "config.json").write_text(project.docker_config)
        return context, dockerfile, root

    def _tag(self, ident: str) -> str:
        return f"{self.repository}:{ident}"

    def _key(self, ident: str, project: Project, context: Path, dockerfile: Path, root: Path) -> Variant:
        spec = TargetSpec(
            name="conformance",
            context=context,
            dockerfile=dockerfile,
            stage=project.stage,
            build_args={name: substitute(value, self.tokens) for name, value in project.args.items()},
        )
        config = str(root / "docker-config") if project.docker_config is not None else None
        try:
            with _environment(DOCKER_CONFIG=config) if config else contextlib.nullcontext():
                key, found = resolver_for(self.engine).key(Target(spec=spec, repository=self.repository))
        except StagecacheError as exc:
            return Variant(ident, refused=f"exit {int(exc.exit_code)}: {exc}")
        except Exception as exc:  # noqa: BLE001 - any other exception is a bug to report, not to raise
            return Variant(ident, crashed=f"{type(exc).__name__}: {exc}")
        return Variant(ident, key=key, uncacheable=tuple(found.uncacheable))

    def _build(
        self, ident: str, project: Project, context: Path, dockerfile: Path, root: Path
    ) -> tuple[str | None, float]:
        argv = ["docker", "buildx", "build", "--no-cache", "--load", "-q", "-t", self._tag(ident),
                "--label", f"{TEST_LABEL}=conformance", "-f", str(dockerfile)]  # fmt: skip
        if project.stage:
            argv += ["--target", project.stage]
        for name, value in project.args.items():
            argv += ["--build-arg", f"{name}={substitute(value, self.tokens)}"]
        for name in project.secrets:
            argv += ["--secret", f"id={name},src={root / 'secrets' / name}"]
        env = dict(os.environ)
        if project.docker_config is not None:
            env["DOCKER_CONFIG"] = str(root / "docker-config")
        started = time.monotonic()
        done = subprocess.run([*argv, str(context)], capture_output=True, text=True, env=env, check=False)
        seconds = time.monotonic() - started
        if done.returncode != 0:
            return _engine_line(done.stderr), seconds
        return None, seconds

    # --- reading images back --------------------------------------------------------------------------
    def _read_and_remove(self, tags: Mapping[str, str]) -> dict[str, Snapshot]:
        try:
            return self._snapshots(tags)
        finally:
            _remove(tags.values())

    def _snapshots(self, tags: Mapping[str, str]) -> dict[str, Snapshot]:
        """Every image: its config from ``docker image inspect``, its files from as few ``docker save``
        calls as the engine allows (an image without layers has no files, and Docker 26 refuses to
        save one: "empty export")."""
        if not tags:
            return {}
        shown: dict[str, dict[str, Any]] = {}
        for doc in json.loads(_docker(["image", "inspect", *tags.values()]).stdout):
            for tag in doc.get("RepoTags") or ():
                shown[_full_tag(tag)] = doc
        layered = {
            ident: tag for ident, tag in tags.items() if (shown[tag].get("RootFS") or {}).get("Layers")
        }
        files = self._files(layered)
        return {
            ident: Snapshot(files.get(ident, {}), _inspected_config(shown[tag]))
            for ident, tag in tags.items()
        }

    def _files(self, tags: Mapping[str, str]) -> dict[str, Files]:
        if not tags:
            return {}
        with tempfile.TemporaryDirectory(dir=self.workdir) as tmp:
            archive = Path(tmp) / "images.tar"
            done = _docker(["save", "-o", str(archive), *tags.values()], check=False)
            if done.returncode == 0:
                by_tag = read_saved(archive)
                return {ident: by_tag[tag] for ident, tag in tags.items()}
            out: dict[str, Files] = {}
            for ident, tag in tags.items():  # one image the engine cannot save must not hide the rest
                _docker(["save", "-o", str(archive), tag])
                out[ident] = read_saved(archive)[tag]
            return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def _docker(args: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SetupError(
            f"docker {' '.join(args[:3])}… exited {done.returncode}: {_engine_line(done.stderr)}"
        )
    return done


def _remove(tags: Iterable[str]) -> None:
    """Untag (and so delete) images, many per call: one call each costs ~1 s on the containerd store."""
    tags = list(tags)
    for start in range(0, len(tags), 100):
        _docker(["image", "rm", *tags[start : start + 100]], check=False)


def _engine_line(stderr: str) -> str:
    """The line of a failed build's output that says why (BuildKit's ERROR line)."""
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR") or "error" in line.lower():
            return line[:400]
    return lines[-1][:400] if lines else "(no output)"


def _full_tag(tag: str) -> str:
    """A tag as docker save's manifest spells it (the containerd store writes the full name)."""
    return tag.removeprefix("docker.io/library/")


# --- docker save archives -----------------------------------------------------------------------------------
CONFIG_FIELDS = (
    "Env", "Cmd", "Entrypoint", "WorkingDir", "User", "ExposedPorts", "Labels", "Volumes",
    "Healthcheck", "StopSignal", "OnBuild", "Shell",
)  # fmt: skip


def read_saved(archive: Path) -> dict[str, Files]:
    """The file systems of the images of a ``docker save`` archive (classic or OCI layout), by tag."""
    out: dict[str, Files] = {}
    layers: dict[str, list[tuple[str, tuple[Any, ...], str]]] = {}
    with tarfile.open(archive) as outer:
        for tag, (_config_path, layer_paths) in _images_in(outer).items():
            stack = []
            for layer in layer_paths:
                if layer not in layers:
                    member = outer.extractfile(layer)
                    assert member is not None, layer
                    layers[layer] = _layer_entries(member)
                stack.append(layers[layer])
            out[_full_tag(tag)] = _flatten(stack)
    return out


def _images_in(outer: tarfile.TarFile) -> dict[str, tuple[str, list[str]]]:
    """Each tag's config and layer paths. An OCI layout's index.json names every tag (the containerd
    store's manifest.json lists two tags of one image only once); older archives have manifest.json."""
    names = set(outer.getnames())
    out: dict[str, tuple[str, list[str]]] = {}
    if "index.json" in names:
        for desc in json.loads(_read(outer, "index.json")).get("manifests", []):
            tag = (desc.get("annotations") or {}).get("io.containerd.image.name")
            if tag:
                manifest = _oci_manifest(outer, desc)
                out[tag] = (
                    _blob(manifest["config"]["digest"]),
                    [_blob(d["digest"]) for d in manifest["layers"]],
                )
    if not out:
        for item in json.loads(_read(outer, "manifest.json")):
            for tag in item.get("RepoTags") or ():
                out[tag] = (item["Config"], list(item["Layers"]))
    return out


def _blob(digest: str) -> str:
    algorithm, _, hexdigest = digest.partition(":")
    return f"blobs/{algorithm}/{hexdigest}"


def _oci_manifest(outer: tarfile.TarFile, desc: Mapping[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(_read(outer, _blob(desc["digest"])))
    while "manifests" in doc:  # an index: the image's own manifest, not an attestation's
        chosen = [d for d in doc["manifests"] if (d.get("platform") or {}).get("os", "linux") != "unknown"]
        doc = json.loads(_read(outer, _blob(chosen[0]["digest"])))
    return doc


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    member = tar.extractfile(name)
    assert member is not None, name
    return member.read()


def _inspected_config(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What ``docker image inspect`` shows of the config; empty values as None (engines differ there)."""
    inner = doc.get("Config") or {}
    out: dict[str, Any] = {name: inner.get(name) or None for name in CONFIG_FIELDS}
    for name in ("Os", "Architecture", "Variant", "Author"):
        out[name] = doc.get(name) or None
    return out


def _norm(name: str) -> str:
    name = name.removeprefix("./").rstrip("/")
    return "" if name == "." else name


def _layer_entries(fileobj: IO[bytes]) -> list[tuple[str, tuple[Any, ...], str]]:
    """(path, entry, hard-link group) for each member of one layer; gzip layers are opened too."""
    entries: list[tuple[str, tuple[Any, ...], str]] = []
    by_path: dict[str, tuple[tuple[Any, ...], str]] = {}
    with tarfile.open(fileobj=fileobj, mode="r|*") as tar:
        for m in tar:
            name = _norm(m.name)
            if not name:
                continue
            xattrs = tuple(sorted((k, v) for k, v in m.pax_headers.items() if k.startswith("SCHILY.xattr.")))
            group = name  # the first name of the file: its hard links are in the group of that name
            if m.islnk():
                entry, group = by_path[_norm(m.linkname)]
            else:
                digest = link = dev = None
                if m.isreg():
                    data = tar.extractfile(m)
                    digest = hashlib.sha256(data.read() if data else b"").hexdigest()
                    kind = "file"
                elif m.issym():
                    kind, link = "symlink", m.linkname
                elif m.isdir():
                    kind = "dir"
                elif m.ischr() or m.isblk():
                    kind, dev = ("chr" if m.ischr() else "blk"), (m.devmajor, m.devminor)
                elif m.isfifo():
                    kind = "fifo"
                else:
                    kind = f"tar type {m.type!r}"
                entry = (kind, m.mode & 0o7777, m.uid, m.gid, digest, link, dev, xattrs)
            by_path[name] = (entry, group)
            entries.append((name, entry, group))
    return entries


def _flatten(stack: Sequence[Sequence[tuple[str, tuple[Any, ...], str]]]) -> Files:
    """The file system the layers make, with each file's hard-link peers (within the layer that made them)."""
    fs: dict[str, tuple[tuple[Any, ...], tuple[int, str]]] = {}

    def drop(path: str, *, itself: bool) -> None:
        prefix = f"{path}/" if path else ""
        for p in [p for p in fs if p.startswith(prefix) or (itself and p == path)]:
            del fs[p]

    for index, layer in enumerate(stack):
        for name, _entry, _group in layer:  # whiteouts hide what the layers below have
            parent, base = posixpath.split(name)
            if base == ".wh..wh..opq":
                drop(parent, itself=False)
            elif base.startswith(".wh."):
                drop(posixpath.join(parent, base[4:]), itself=True)
        for name, entry, group in layer:
            base = posixpath.basename(name)
            if base.startswith(".wh."):
                continue
            old = fs.get(name)
            if old is not None and old[0][0] == "dir" and entry[0] != "dir":
                drop(name, itself=False)
            fs[name] = (entry, (index, group))
    peers: dict[tuple[int, str], list[str]] = {}
    for path, (_entry, where) in fs.items():
        peers.setdefault(where, []).append(path)
    out: Files = {}
    for path, (entry, where) in fs.items():
        linked = tuple(sorted(p for p in peers[where] if p != path))
        out[path] = (*entry, linked)
    return out


# --- summaries ----------------------------------------------------------------------------------------------
def tally(results: Sequence[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict] = counts.get(r.verdict, 0) + 1
    return counts


def engine_description() -> str:
    version = _docker(["version", "--format", "{{.Server.Version}}"], check=False).stdout.strip()
    driver = _docker(["info", "--format", "{{.Driver}}"], check=False).stdout.strip()
    return f"Docker {version or 'unknown'} ({driver or 'unknown'})"
