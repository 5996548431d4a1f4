"""Issue 12's false hits, built for real: the image before and after one change, and the key's verdict.

Each case is a small project, a change that alters what BuildKit puts in the image, and the key before
and after it. The image's files are compared by path, type, mode, owner, content, link target and
hard-link identity (``--no-cache``: proxy args are not in BuildKit's own cache key). A change of the
image with the same key is the false hit the case once was. Then the word lexer is checked against the
engine itself: generated words as ``LABEL`` values, one build, the labels read back.
"""

from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import dockerfile as grammar
import pytest

from stagecache.engine.docker import Docker
from stagecache.key.spec import TargetSpec
from stagecache.key.words import DEFAULT_PATH, WordError, frontend_for, process_word
from stagecache.keying import Keyer
from stagecache.project.settings import Target
from stagecache.refs import LABEL_PREFIX
from tests.unit.test_words_fuzz import generate

pytestmark = pytest.mark.slow
BASE = "python:3.11-slim"  # the local stand-in; nothing can be pulled


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)


def _relink(root: Path) -> None:
    (root / "d/b").unlink()
    os.link(root / "d/a", root / "d/b")


Case = tuple[str, dict[str, str], str | None, Callable[[Path], object], dict[str, str], dict[str, str]]
CASES: list[Case] = [
    # name, files, target, change, build args before, after
    ("copy-quoted", {"Dockerfile": 'FROM scratch\nCOPY "s*" /app/\n', "s1": "1", "s2": "2"}, None,
     lambda r: (r / "s1").write_text("changed"), {}, {}),
    ("env-quoted", {"Dockerfile": 'FROM scratch\nENV D="s*"\nCOPY $D /app/\n', "s1": "1"}, None,
     lambda r: (r / "s1").write_text("changed"), {}, {}),
    ("arg-quoted", {"Dockerfile": 'FROM scratch\nARG SRC="s"*\nCOPY $SRC /app/\n', "s1": "1"}, None,
     lambda r: (r / "s1").write_text("changed"), {}, {}),
    ("quoted-name", {"Dockerfile": 'FROM scratch\nCOPY "a.txt" /a/\n', "a.txt": "a"}, None,
     lambda r: (r / "a.txt").write_text("changed"), {}, {}),
    ("onbuild-stage", {"Dockerfile": "FROM scratch AS base\nONBUILD COPY trig.txt /trig.txt\n"
                       "FROM base AS dev\nCOPY a.txt /\n", "trig.txt": "t", "a.txt": "a"}, "dev",
     lambda r: (r / "trig.txt").write_text("changed"), {}, {}),
    ("symlink-wildcard", {"Dockerfile": "FROM scratch\nCOPY lnk/*.txt /app/\nCOPY lnk/a.txt /one/\n",
                          "real/a.txt": "a", "real/b.txt": "b"}, None,
     lambda r: (r / "real/b.txt").write_text("changed"), {}, {}),
    ("hard-link", {"Dockerfile": "FROM scratch\nCOPY d /x/\n", "d/a": "same", "d/b": "same"}, None,
     _relink, {}, {}),
    ("proxy-arg", {"Dockerfile": f"FROM {BASE}\nRUN echo \"$HTTP_PROXY\" > /proxy\n"}, None,
     lambda r: None, {"HTTP_PROXY": "http://one:3128"}, {"HTTP_PROXY": "http://two:3128"}),
    ("mount-word", {"Dockerfile": f"FROM {BASE}\nARG X=a.txt\nRUN --mount=type=bind,source=$X,target=/m "
                    "cp /m /copied\n", "a.txt": "a", "$X": "dollar"}, None,
     lambda r: ((r / "a.txt").write_text("changed"), (r / "$X").write_text("changed too")), {}, {}),
]  # fmt: skip


def _image_files(docker: Docker, image: str, only: tuple[str, ...]) -> str:
    """A digest of the image's files under ``only`` (all of a scratch image's)."""
    container = docker.runner(["docker", "create", image, "none"]).stdout.strip()
    try:
        data = subprocess.run(["docker", "export", container], capture_output=True, check=True).stdout
    finally:
        docker.runner(["docker", "rm", "-f", container], check=False)
    digest = hashlib.sha256()
    inodes: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        for m in sorted(tar.getmembers(), key=lambda m: m.name):
            name = m.name.rstrip("/")
            if name.split("/")[0] in {".dockerenv", "dev", "etc", "proc", "sys"} or (
                only and not name.startswith(only)
            ):
                continue
            content = b""
            if m.isfile():
                fh = tar.extractfile(m)
                content = fh.read() if fh else b""
            link = inodes.setdefault(m.linkname, m.linkname) if m.islnk() else m.linkname
            row = (name, m.type, m.mode & 0o7777, m.uid, m.gid, link, hashlib.sha256(content).hexdigest())
            digest.update(repr(row).encode())
    return digest.hexdigest()


def _state(
    engine: Docker, root: Path, target: str | None, args: dict[str, str], tmp: Path
) -> tuple[str, str]:
    dockerfile = root / "Dockerfile"
    spec = TargetSpec(name="findings", context=root, dockerfile=dockerfile, stage=target, build_args=args)
    key, _ = Keyer(engine).key(Target(spec=spec, repository="stagecache-findings"))
    tag = f"stagecache-findings:{os.getpid()}-{random.randrange(10**9)}"
    labels = {f"{LABEL_PREFIX}.test": "1"}
    done = engine.build(context=root, dockerfile=dockerfile, target=target, tags=[tag], build_args=args,
                        labels=labels, no_cache=True, quiet=True, iidfile=tmp / "iid")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        only = () if "scratch" in dockerfile.read_text() else ("proxy", "copied")
        return key, _image_files(engine, tag, only)
    finally:
        engine.remove_image(tag, force=True)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_changed_image_has_a_changed_key(engine: Docker, tmp_path: Path, case: Case) -> None:
    _name, files, target, change, before_args, after_args = case
    root = tmp_path / "project"
    root.mkdir()
    _write(root, files)
    if "lnk/" in files["Dockerfile"]:
        (root / "lnk").symlink_to("real")
    key_before, image_before = _state(engine, root, target, before_args, tmp_path)
    change(root)
    key_after, image_after = _state(engine, root, target, after_args, tmp_path)
    assert image_after != image_before, "the change must change the image, or the case proves nothing"
    assert key_after != key_before, "false hit: the image changed, the key did not"


def test_labels_read_words_as_the_lexer_does(engine: Docker, tmp_path: Path, run_id: str) -> None:
    """Generated words as LABEL values (BuildKit reads them with its lexer against the stage's
    variables), built once: every label must be what :func:`process_word` says."""
    frontend = frontend_for(engine.engine().version)
    env = {"A": "a.b.c", "E": "", "S": "x y", "PATH": DEFAULT_PATH}
    lines = ["FROM scratch", 'ENV A=a.b.c E= S="x y"']
    expected: dict[str, str] = {}
    rng = random.Random(1130)
    pieces = ["${A}", "${A:-d}", "${E:-d}", "${E-d}", "${U:+p}", "${S:+p}", "${A#*.}", "${A##*.}", "${A%.*}",
              "${A%%.*}", "${A/./-}", "${A//./-}", "$S", '"$S"', "'$S'", "\\$A"]  # fmt: skip
    while len(expected) < 300:
        word = generate(rng) + rng.choice(pieces) + generate(rng)
        if any(c in word for c in "\t\n<") or word.rstrip().endswith("\\"):  # a trailing \ continues the line
            continue
        label = f"l{len(expected)}"
        try:
            command = grammar.parse_string(f"FROM scratch\nLABEL {label}={word}\n")[1]
        except grammar.GoParseError:
            continue
        if len(command.value) != 2:
            continue
        try:
            value = process_word(command.value[1], env, dialect=frontend.lexer).text
        except WordError:
            continue
        lines.append(f"LABEL {label}={word}")
        expected[label] = value
    root = tmp_path / "labels"
    root.mkdir()
    (root / "Dockerfile").write_text("\n".join(lines) + "\n")
    tag = f"stagecache-findings-labels:{run_id}"
    labels = {f"{LABEL_PREFIX}.test": "1"}
    done = engine.build(context=root, dockerfile=root / "Dockerfile", target=None, tags=[tag], build_args={},
                        labels=labels, quiet=True, iidfile=tmp_path / "iid")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    try:
        info = engine.image_inspect(tag)
        assert info is not None
        got = {k: v for k, v in info.labels.items() if k in expected}
    finally:
        engine.remove_image(tag, force=True)
    wrong = {
        k: (lines[int(k[1:]) + 2], expected[k], got.get(k)) for k in expected if got.get(k) != expected[k]
    }
    assert not wrong, wrong
