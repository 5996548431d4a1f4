"""Differential check of the key against BuildKit: mutate a generated project one thing at a time,
build it for real, and compare what changed in the image's file system with what changed in the key.

A *false hit* (the image's files changed, the key did not) would make stagecache hand out a stale image:
there must be none. A *false miss* (the key changed, the files did not) only costs a rebuild; they are
counted. Used by ``tests/integration/test_differential.py`` (a small sample) and
``benchmarks/differential.py`` (a larger one).
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stagecache.app import resolver_for
from stagecache.build import Resolver
from stagecache.engine.docker import Docker
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target

DOCKERFILE = """\
FROM scratch AS lib
COPY src/ /lib/
FROM scratch AS other
COPY other/ /other/
COPY src/ /other-src/
FROM scratch AS target
COPY --from=lib /lib /t/lib
COPY docs/ /t/docs/
COPY conf* /t/conf/
LABEL org.stagecache.test=1
"""

IGNORE_VOCABULARY = [
    "*.log", "**/*.tmp", "src/cache", "!src/cache/keep.txt", "docs/*.md", "!docs/index.md",
    "/conf.secret", "**/__pycache__", "src/**/gen_*", "other",
]  # fmt: skip
DIRS = ["src", "src/pkg", "src/pkg/sub", "src/cache", "docs", "docs/api", "other", "other/x", "."]
NAMES = [
    "a.py",
    "b.txt",
    "c.log",
    "d.tmp",
    "gen_e.py",
    "index.md",
    "f.md",
    "keep.txt",
    "g.cfg",
    "__pycache__/h.pyc",
]


def generate(root: Path, rng: random.Random) -> None:
    for _ in range(rng.randint(15, 30)):
        _add_file(root, rng)
    for conf in ("conf.ini", "conf.secret"):
        (root / conf).write_text(f"{conf} {rng.random()}\n")
    (root / "src/empty").mkdir(parents=True, exist_ok=True)
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs/link.md").symlink_to("index.md")
    patterns = rng.sample(IGNORE_VOCABULARY, rng.randint(2, 6))
    (root / ".dockerignore").write_text("\n".join(patterns) + "\n")
    (root / "Dockerfile").write_text(DOCKERFILE)


def _add_file(root: Path, rng: random.Random) -> Path:
    path = root / rng.choice(DIRS) / rng.choice(NAMES)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(rng.randbytes(rng.randint(0, 300)))
    os.chmod(path, rng.choice([0o644, 0o755, 0o600]))
    return path


def _files(root: Path) -> list[Path]:
    out = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return sorted(p for p in out if p.name not in ("Dockerfile", ".dockerignore"))


def _modify(root: Path, rng: random.Random) -> str:
    path = rng.choice(_files(root))
    path.write_bytes(path.read_bytes() + b"x")
    return f"modify {path.relative_to(root)}"


def _add(root: Path, rng: random.Random) -> str:
    return f"add {_add_file(root, rng).relative_to(root)}"


def _delete(root: Path, rng: random.Random) -> str:
    path = rng.choice(_files(root))
    path.unlink()
    return f"delete {path.relative_to(root)}"


def _chmod(root: Path, rng: random.Random) -> str:
    path = rng.choice(_files(root))
    os.chmod(path, path.stat().st_mode ^ 0o111)
    return f"chmod {path.relative_to(root)}"


def _rename(root: Path, rng: random.Random) -> str:
    path = rng.choice(_files(root))
    new = path.with_name("renamed_" + path.name)
    path.rename(new)
    return f"rename {path.relative_to(root)}"


def _touch(root: Path, rng: random.Random) -> str:
    path = rng.choice(_files(root))
    os.utime(path, (rng.randint(1, 10**9), rng.randint(1, 10**9)))
    return f"touch {path.relative_to(root)}"


def _mkdir(root: Path, rng: random.Random) -> str:
    path = root / rng.choice(DIRS) / f"empty{rng.randint(0, 999)}"
    path.mkdir(parents=True, exist_ok=True)
    return f"mkdir {path.relative_to(root)}"


def _relink(root: Path, rng: random.Random) -> str:
    link = root / "docs/link.md"
    if link.is_symlink():
        link.unlink()
    link.symlink_to(rng.choice(["index.md", "f.md", "api/a.py", "missing"]))
    return "relink docs/link.md"


def _ignore(root: Path, rng: random.Random) -> str:
    path = root / ".dockerignore"
    pattern = rng.choice(IGNORE_VOCABULARY)
    path.write_text(path.read_text() + pattern + "\n")
    return f"ignore {pattern}"


def _comment(root: Path, rng: random.Random) -> str:
    path = root / "Dockerfile"
    path.write_text(f"# comment {rng.random()}\n" + path.read_text())
    return "comment in Dockerfile"


MUTATIONS: list[Callable[[Path, random.Random], str]] = [
    _modify, _add, _delete, _chmod, _rename, _touch, _mkdir, _relink, _ignore, _comment,
]  # fmt: skip


def filesystem_digest(docker: Docker, image: str) -> str:
    """A digest of the image's files: paths, kinds, modes, contents, link targets (never mtimes)."""
    created = docker.runner(["docker", "create", image, "none"])
    container = created.stdout.strip()
    try:
        data = subprocess.run(["docker", "export", container], capture_output=True, check=True).stdout
    finally:
        docker.runner(["docker", "rm", "-f", container], check=False)
    digest = hashlib.sha256()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = sorted(tar.getmembers(), key=lambda m: m.name)
        for m in members:
            name = m.name.rstrip("/")
            if not name.startswith("t"):  # docker adds /dev, /etc, /proc, /sys, .dockerenv
                continue
            content = b""
            if m.isfile():
                fh = tar.extractfile(m)
                content = fh.read() if fh else b""
            digest.update(
                repr(
                    (name, m.type, m.mode & 0o7777, m.linkname, hashlib.sha256(content).hexdigest())
                ).encode()
            )
    return digest.hexdigest()


@dataclass
class Tally:
    steps: int = 0
    content_changes: int = 0
    key_changes: int = 0
    false_hits: list[str] = field(default_factory=list)
    false_misses: list[str] = field(default_factory=list)


def run(docker: Docker, seed: int, mutations: int, repository: str) -> Tally:
    """Generate a project from ``seed`` and walk it through ``mutations`` random single changes."""
    rng = random.Random(seed)
    tally = Tally()
    with tempfile.TemporaryDirectory(prefix="stagecache-diff-") as tmp:
        root = Path(tmp) / "project"
        root.mkdir()
        generate(root, rng)
        spec = TargetSpec(name="target", context=root, dockerfile=root / "Dockerfile", stage="target")
        resolver = resolver_for(docker, store=None)
        target = Target(spec=spec, repository=repository)
        previous = _state(resolver, docker, target, repository, tmp)
        for _ in range(mutations):
            what = rng.choice(MUTATIONS)(root, rng)
            current = _state(resolver, docker, target, repository, tmp)
            tally.steps += 1
            key_changed, content_changed = current[0] != previous[0], current[1] != previous[1]
            tally.key_changes += key_changed
            tally.content_changes += content_changed
            if content_changed and not key_changed:
                tally.false_hits.append(f"seed {seed}: {what}")
            if key_changed and not content_changed:
                tally.false_misses.append(f"seed {seed}: {what}")
            previous = current
        shutil.rmtree(root, ignore_errors=True)
    return tally


def _state(resolver: Resolver, docker: Docker, target: Target, repository: str, tmp: str) -> tuple[str, str]:
    key, _ = resolver.key(target)
    tag = f"{repository}:diff"
    spec = target.spec
    done = docker.build(context=spec.context, dockerfile=spec.dockerfile, target=spec.stage, tags=[tag],
                        build_args={}, labels={}, quiet=True, iidfile=Path(tmp) / "iid")  # fmt: skip
    if done.returncode != 0:
        raise AssertionError(f"build failed: {done.stderr[-2000:]}")
    try:
        return key, filesystem_digest(docker, tag)
    finally:
        docker.remove_image(tag, force=True)
