"""``walk()`` against the real BuildKit: what ``COPY . /`` puts in an image is the ground truth.

Each case builds ``FROM scratch`` + ``COPY . /`` from a context with a varied tree, reads the image's
file list back through ``docker export`` and compares it, path by path, with what
:func:`stagecache.key.walk.walk` says BuildKit sends. The Dockerfile lives outside the context (``-f``),
with a ``Dockerfile.dockerignore`` beside it, and the context holds a decoy ``.dockerignore`` that would
exclude everything: a pass also shows that BuildKit prefers the file beside the Dockerfile.
"""

from __future__ import annotations

import json
import os
import random
import stat
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker
from stagecache.key import ignore as ctx_ignore
from stagecache.key import walk as ctx_walk
from stagecache.process import run
from stagecache.refs import LABEL_PREFIX

pytestmark = pytest.mark.docker

# What docker adds to every container's filesystem; the trees below never use these names.
DOCKER_OWN = {".dockerenv", "dev", "etc", "proc", "sys"}
Seen = dict[str, tuple[str, int, int | None, str | None]]


def _write(path: Path, data: str = "", mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    path.chmod(mode)


def _make_tree(root: Path) -> None:
    """Nested and empty directories, dotfiles, odd names, several modes, links, a socket and a FIFO."""
    for rel, mode in [
        ("app/__init__.py", 0o644),
        ("app/main.py", 0o755),
        ("app/README.md", 0o644),
        ("app/x.env", 0o600),
        ("app/core/util.py", 0o644),
        ("app/core/x.md", 0o444),
        ("app/__pycache__/main.cpython-311.pyc", 0o644),
        ("__pycache__/top.cpython-311.pyc", 0o644),
        ("docs/keep.md", 0o644),
        ("docs/keep.md.d/y.txt", 0o644),
        ("docs/guide/intro.md", 0o644),
        (".git/HEAD", 0o644),
        (".git/objects/ab/cdef", 0o444),
        ("node_modules/pkg/index.js", 0o644),
        ("node_modules/pkg/package.json", 0o644),
        (".env", 0o600),
        (".hidden/secret", 0o400),
        ("emptied/only.log", 0o644),
        ("important.log", 0o644),
        ("bin/tool", 0o700),
        ("bin/suid", 0o4755),
        ("bin/sgid", 0o2711),
        ("data/a.txt", 0o644),
        ("data/b.csv", 0o000),
        ("data/sub/c.txt", 0o664),
        ("file5", 0o644),
        ("filed", 0o644),
        ("sp ace.txt", 0o644),
        ("uni-\u00e9.txt", 0o644),
        ("# hash", 0o644),
        ("[x]", 0o644),
        ("*", 0o644),
        ("]", 0o644),
        ("sockets/keep.txt", 0o644),
        ("a^b", 0o644),
        ("c^d", 0o644),
    ]:
        _write(root / rel, f"{rel}\n" * (len(rel) % 5), mode)
    (root / "empty").mkdir()
    (root / "shared").mkdir(mode=0o775)
    (root / "shared").chmod(0o2775)
    (root / "scratch").mkdir()
    (root / "scratch").chmod(0o1777)
    (root / "link_rel").symlink_to("app/main.py")
    (root / "link_abs").symlink_to("/bin/sh")
    (root / "docs/link_out").symlink_to("../../outside")
    (root / "link_dangling").symlink_to("nowhere")
    (root / "link_dir").symlink_to("docs")
    os.link(root / "app/main.py", root / "hard")
    os.mknod(root / "sockets/app.sock", stat.S_IFSOCK | 0o751)
    (root / "fifos").mkdir()
    os.mkfifo(root / "fifos/pipe")


def _expected(context: Path, dockerfile: Path) -> Seen:
    rules = ctx_ignore.IgnoreRules.load(ctx_ignore.find_ignore_file(context, dockerfile))
    seen: Seen = {}
    for e in ctx_walk.walk(context, rules):
        # A socket or device node is an empty regular file in the image; so is a file whose content
        # BuildKit refuses to read, as long as the engine's context cache has no copy of it.
        kind = "file" if e.kind == "special" else e.kind
        size = 0 if e.content_refused else e.size
        seen[e.path] = (kind, e.mode, size if kind == "file" else None, e.link_target)
    return seen


def _built(context: Path, dockerfile: Path, engine: Docker) -> Seen:
    """Build ``FROM scratch`` + ``COPY . /`` and list what the image holds."""
    tag = f"stagecache-test-context:{uuid.uuid4().hex[:12]}"
    archive = dockerfile.parent / "export.tar"
    cid = ""
    try:
        build = ["docker", "buildx", "build", "--load", "-t", tag, "--label", f"{LABEL_PREFIX}.test=1"]
        run([*build, "-f", str(dockerfile), str(context)])
        cid = run(["docker", "create", tag, "none"]).stdout.strip()
        run(["docker", "export", "-o", str(archive), cid])
    finally:
        if cid:
            run(["docker", "rm", "-f", cid], check=False)
        engine.remove_image(tag, force=True)
    seen: Seen = {}
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            path = member.name.rstrip("/").removeprefix("./")
            if not path or path.split("/")[0] in DOCKER_OWN:
                continue
            mode = stat.S_IMODE(member.mode)
            if member.isdir():
                seen[path] = ("dir", mode, None, None)
            elif member.issym():
                seen[path] = ("symlink", mode, None, member.linkname)
            elif member.islnk():  # a hard link: same file, size not repeated
                seen[path] = ("file", mode, seen[member.linkname][2], None)
            elif member.isreg():
                seen[path] = ("file", mode, member.size, None)
            elif member.isfifo():
                # BuildKit 0.8 drops a FIFO, newer BuildKit copies it: a target that copies one is
                # uncacheable (key/inputs.py; test_a_fifo_makes_a_build_uncacheable_on_this_engine)
                continue
            else:
                seen[path] = (f"tar type {member.type!r}", mode, None, None)
    return seen


def _drop_sizes_of_links(seen: Seen) -> Seen:
    # Symlink sizes are the target's length on disk and 0 in a tar: only the target string counts.
    return {p: (k, m, None if k == "symlink" else s, t) for p, (k, m, s, t) in seen.items()}


def _context_dir(tmp_path: Path) -> Path:
    """A context directory with a name of its own.

    BuildKit keeps a cache of each context it received, keyed by the directory's base name, and
    reuses a cached file whose size and mtime did not change: a unique name makes every build start
    cold, so what the image holds depends on this build alone.
    """
    context = tmp_path / f"ctx-{uuid.uuid4().hex[:12]}"
    context.mkdir()
    return context


def _compare(tmp_path: Path, ignore: str | None, engine: Docker, *, beside: bool = True) -> Seen:
    context = _context_dir(tmp_path)
    _make_tree(context)
    build = tmp_path / "build"
    build.mkdir()
    dockerfile = build / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    if beside:
        (context / ".dockerignore").write_text("*\n")  # the decoy: must not be used
        if ignore is not None:
            (build / "Dockerfile.dockerignore").write_text(ignore)
    elif ignore is not None:
        (context / ".dockerignore").write_text(ignore)
    want = _drop_sizes_of_links(_expected(context, dockerfile))
    got = _drop_sizes_of_links(_built(context, dockerfile, engine))
    missing = sorted(set(got) - set(want))
    extra = sorted(set(want) - set(got))
    differ = sorted(p for p in set(got) & set(want) if got[p] != want[p])
    assert (missing, extra, differ) == ([], [], []), (
        f"in the image but not walked: {missing}; walked but not in the image: {extra}; "
        f"different: {[(p, got[p], want[p]) for p in differ]}"
    )
    return got


CASES = {
    "python-service": (
        "# a typical service\n**/__pycache__\n*.env\n.git\nnode_modules\n*.log\n!important.log\n\n"
    ),
    "negations": "docs\n!docs/keep.md\napp/*.md\n!app/README.md\n/data/sub\n!data/sub/c.txt\n",
    "everything-then-back": "*\n!app\n!docs/**/*.md\napp/core\n!app/core/util.py\n!fifos/pipe\n",
    "dirs-and-slashes": "./bin/\n/.hidden/\nlink_*\n**.pyc\n  !  /bin/suid  \n.git/\n",
    "quirks": (
        "app/core\n!app\nfile\\d\n[*]\n  # hash\nsp ace.txt   \n\\[x\\]\nsockets\n!sockets/*.sock\n"
        "a^b\nc^d*\n"
    ),
    "double-star-middle": "app/**/*.md\ndocs/**/y.txt\n**/*.py\n!app/**/util.py\n",
    # An empty file beside the Dockerfile still wins over the context's `.dockerignore`.
    "empty-beside-file": "",
}


@pytest.mark.parametrize("ignore", list(CASES.values()), ids=list(CASES))
def test_walk_matches_buildkit(tmp_path: Path, engine: Docker, ignore: str) -> None:
    _compare(tmp_path, ignore, engine)


def test_context_dockerignore_when_none_beside_dockerfile(tmp_path: Path, engine: Docker) -> None:
    got = _compare(tmp_path, "docs\n!docs/keep.md\n.dockerignore\n", engine, beside=False)
    assert "docs/keep.md" in got
    assert ".dockerignore" not in got


def test_buildkit_facts(tmp_path: Path, engine: Docker) -> None:
    """The behaviours the module documents, read straight from an image."""
    got = _compare(tmp_path, "docs\n!docs/nothing-here\nfifos\n!fifos/pipe\n*.env\napp/*.md\n", engine)
    assert "docs" not in got  # walked for the exception, sent only if something inside is
    assert got["fifos"][0] == "dir"  # the re-included FIFO brings its parent ...
    assert "fifos/pipe" not in got  # ... but is itself dropped
    assert got["sockets/app.sock"] == ("file", 0o751, 0, None)  # a socket becomes an empty file
    assert "app/x.env" in got  # `*.env` stays at the top level
    assert "app/core/x.md" in got  # `app/*.md` does not reach into app/core
    assert got["emptied"][0] == "dir"
    assert got["bin/suid"][1] == 0o4755
    assert got["link_abs"] == ("symlink", 0o777, None, "/bin/sh")


def test_file_listed_but_refused_arrives_empty(tmp_path: Path, engine: Docker) -> None:
    """fsutil lists a file its walk keeps but its open-time test excludes: the content is lost."""
    context = _context_dir(tmp_path)
    _write(context / "z/x/y.md/f.txt", "hello\n")
    _write(context / "z/x/g.txt", "hi\n")
    (context / ".dockerignore").write_text("*/*\n!**/*.txt\n**/*.md\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    walked = {
        e.path: e for e in ctx_walk.walk(context, ctx_ignore.IgnoreRules.load(context / ".dockerignore"))
    }
    assert walked["z/x/y.md/f.txt"].content_refused
    assert not walked["z/x/g.txt"].content_refused
    got = _built(context, dockerfile, engine)
    assert got["z/x/y.md/f.txt"] == ("file", 0o644, 0, None)  # listed, mode kept, content lost
    assert got["z/x/g.txt"] == ("file", 0o644, 3, None)


def test_reinclude_then_broader_pattern_loses_content(tmp_path: Path, engine: Docker) -> None:
    """A natural way to hit it: a pattern after `!build/**` that matches `build` itself."""
    context = _context_dir(tmp_path)
    _write(context / "build/out/app.bin", "payload\n")
    (context / ".dockerignore").write_text("build\n!build/**\n**/build\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    walked = {
        e.path: e for e in ctx_walk.walk(context, ctx_ignore.IgnoreRules.load(context / ".dockerignore"))
    }
    assert walked["build/out/app.bin"].content_refused
    assert _built(context, dockerfile, engine)["build/out/app.bin"] == ("file", 0o644, 0, None)


VOCABULARY = [
    "*",
    "**",
    "*.py",
    "*.md",
    "**/*.md",
    "**/__pycache__",
    "a",
    "a/",
    "/a/b",
    "a/*",
    "a/**",
    "a/**/c",
    "**/c",
    "b?",
    "[ab]",
    "[^a]*",
    "**.txt",
    "a**",
    ".*",
    "./a/./b/",
    "../x",
    "# comment",
    "  c  ",
    "!a/b",
    "!**/*.txt",
    "!c",
    "!/a/c",
    "!a/**",
    "!b?/x.py",
    "!*.md",
]
NAMES = ["a", "b", "c", "ab", "b1", "x.py", "y.md", "z.txt", ".h", "__pycache__"]


def _random_tree(root: Path, rng: random.Random, depth: int = 0) -> None:
    for name in rng.sample(NAMES, rng.randint(2, 6)):
        path = root / name
        roll = rng.random()
        if depth < 3 and roll < 0.45:
            path.mkdir()
            _random_tree(path, rng, depth + 1)
        elif roll < 0.55:
            path.symlink_to(rng.choice(["a", "../b", "/x.py", "nowhere"]))
        else:
            _write(path, name * rng.randint(0, 3), rng.choice([0o644, 0o755, 0o600]))


# Seeds picked for variety: 3 is plain; 7, 10 and 97 have files whose content BuildKit refuses;
# 7, 10 and 16 have excluded directories sent only for what an exception brings back.
@pytest.mark.parametrize("seed", [3, 7, 10, 16, 97])
def test_walk_matches_buildkit_random(tmp_path: Path, engine: Docker, seed: int) -> None:
    rng = random.Random(seed)
    context = _context_dir(tmp_path)
    _random_tree(context, rng)
    build = tmp_path / "build"
    build.mkdir()
    dockerfile = build / "Dockerfile"
    dockerfile.write_text("FROM scratch\nCOPY . /\n")
    ignore = "\n".join(rng.choice(VOCABULARY) for _ in range(rng.randint(3, 8))) + "\n"
    (build / "Dockerfile.dockerignore").write_text(ignore)
    want = _drop_sizes_of_links(_expected(context, dockerfile))
    got = _drop_sizes_of_links(_built(context, dockerfile, engine))
    assert got == want, f"seed {seed}, ignore file:\n{ignore}"


def test_a_fifo_makes_a_build_uncacheable_on_this_engine(engine: Docker, tmp_path: Path) -> None:
    """Whether this engine's BuildKit copies the FIFO or drops it, stagecache builds every time and
    stores nothing: no key can say which image a FIFO in the context gives."""
    context = tmp_path / "ctx"
    (context / "pipes").mkdir(parents=True)
    os.mkfifo(context / "pipes" / "pipe")
    (context / "Dockerfile").write_text("FROM scratch AS dev\nCOPY pipes /pipes/\n")
    store = tmp_path / "store"
    repository = f"stagecache-test-fifo-{uuid.uuid4().hex[:8]}"
    args = [sys.executable, "-m", "stagecache", "build", "-f", "Dockerfile", "--store", str(store),
            "--no-commit-tag", "--repository", repository, "--json", "dev"]  # fmt: skip
    outcomes = []
    try:
        for _ in range(2):
            done = subprocess.run(args, cwd=context, capture_output=True, text=True, timeout=300, check=False)
            assert done.returncode == 0, done.stderr
            assert "pipes/pipe: a FIFO the target copies" in done.stderr
            (result,) = json.loads(done.stdout)
            outcomes.append((result["outcome"], result["cacheable"], result["stored"]))
    finally:
        engine.untag_repository(repository)
    assert outcomes == [("built", False, False)] * 2
    assert not (store / "v1" / "meta").exists() or list((store / "v1" / "meta").iterdir()) == []
