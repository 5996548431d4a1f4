"""The context watcher against the real kernel (inotify), and keys computed through it."""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import signal
import socket as socketlib
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stagecache.cli import main
from stagecache.errors import StagecacheError
from stagecache.key import inputs
from stagecache.key.ignore import IgnoreRules
from stagecache.key.spec import TargetSpec
from stagecache.key.walk import Entry, walk
from stagecache.speed import watch
from stagecache.speed import watcherd as watcher_module
from stagecache.speed.digests import DigestCache
from stagecache.speed.watcher import Mount, Watcher, fstype_of, mounts_below
from tests.fakes import Images

pytestmark = pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="inotify is Linux only")


def _changed(watcher: Watcher, token: str) -> list[str]:
    answer = watcher.since(token)
    assert "all" not in answer, answer
    changed = answer["changed"]
    assert isinstance(changed, list)
    return changed


@pytest.fixture
def watcher(tmp_path: Path) -> Iterator[Watcher]:
    root = tmp_path / "ctx"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "mod.py").write_text("x = 1\n")
    w = Watcher(str(root))
    yield w
    w.close()


def _token(watcher: Watcher) -> str:
    token = watcher.since("")["token"]
    assert isinstance(token, str)
    return token


def test_a_modified_file_is_reported_and_then_not_again(watcher: Watcher) -> None:
    first = _token(watcher)
    Path(watcher.root, "src/pkg/mod.py").write_text("x = 2\n")
    assert _changed(watcher, first) == ["src/pkg/mod.py"]
    second = _token(watcher)
    assert _changed(watcher, second) == []
    assert _changed(watcher, first) == ["src/pkg/mod.py"]  # an older token still sees it


def test_a_new_directory_tree_is_reported_file_by_file(watcher: Watcher) -> None:
    token = _token(watcher)
    deep = Path(watcher.root, "a/b/c")
    deep.mkdir(parents=True)  # made faster than the watcher can watch each level
    (deep / "f.txt").write_text("f")
    assert {"a", "a/b", "a/b/c", "a/b/c/f.txt"} <= set(_changed(watcher, token))
    token = _token(watcher)
    (deep / "g.txt").write_text("g")  # and the new directories are watched from now on
    assert _changed(watcher, token) == ["a/b/c/g.txt"]


def test_a_directory_moved_within_the_context_is_watched_under_its_new_name(watcher: Watcher) -> None:
    root = Path(watcher.root)
    token = _token(watcher)
    (root / "src").rename(root / "lib")
    assert set(_changed(watcher, token)) >= {"src", "lib", "lib/pkg", "lib/pkg/mod.py"}
    token = _token(watcher)
    (root / "lib/pkg/mod.py").write_text("moved\n")
    assert _changed(watcher, token) == ["lib/pkg/mod.py"]


def test_a_directory_moved_out_is_no_longer_watched(watcher: Watcher, tmp_path: Path) -> None:
    root = Path(watcher.root)
    token = _token(watcher)
    (root / "src").rename(tmp_path / "outside")
    assert _changed(watcher, token) == ["src"]
    token = _token(watcher)
    (tmp_path / "outside/pkg/mod.py").write_text("elsewhere\n")
    assert _changed(watcher, token) == []
    assert "src" not in watcher.wds
    assert "src/pkg" not in watcher.wds


def test_mode_and_time_changes_are_reported(watcher: Watcher) -> None:
    path = Path(watcher.root, "src/pkg/mod.py")
    token = _token(watcher)
    path.chmod(0o755)
    assert _changed(watcher, token) == ["src/pkg/mod.py"]
    token = _token(watcher)
    os.utime(path, (1, 1))
    assert _changed(watcher, token) == ["src/pkg/mod.py"]


def test_tokens_it_cannot_answer_get_all(watcher: Watcher) -> None:
    token = _token(watcher)
    assert watcher.since("0123456789abcdef:0").get("all") is True  # another instance's
    assert watcher.since("garbage").get("all") is True
    watcher._overflowed()  # what the kernel's queue overflowing does
    assert watcher.since(token).get("all") is True
    fresh = _token(watcher)
    Path(watcher.root, "new.txt").write_text("n")
    assert _changed(watcher, fresh) == ["new.txt"]


def test_removing_the_root_ends_the_watch(watcher: Watcher) -> None:
    shutil.rmtree(watcher.root)
    watcher.drain()
    assert not watcher.alive


def test_a_root_replaced_by_another_directory_gets_all(tmp_path: Path) -> None:
    """The root's inode gets no event when a directory above it is renamed: the watcher checks it."""
    root = tmp_path / "proj" / "ctx"
    root.mkdir(parents=True)
    watcher = Watcher(str(root))
    try:
        token = _token(watcher)
        (tmp_path / "proj").rename(tmp_path / "proj.old")
        root.mkdir(parents=True)  # the same path, another directory
        assert watcher.since(token).get("all") is True
        assert not watcher.alive
    finally:
        watcher.close()


def test_malformed_tokens_get_all(watcher: Watcher) -> None:
    instance = _token(watcher).partition(":")[0]
    for number in ["\u00b2", "1" * 5000, "-1", ""]:  # "²".isdigit() is true, int("²") fails
        assert watcher.since(f"{instance}:{number}").get("all") is True


def test_a_mount_below_the_root_starts_over(watcher: Watcher, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "mod.py").write_text("from elsewhere\n")
    target = Path(watcher.root, "src", "pkg")
    token = _token(watcher)
    if subprocess.run(["mount", "--bind", str(other), str(target)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount here (not root?)")
    try:
        assert watcher.since(token).get("all") is True  # the files under it changed without an event
        fresh = _token(watcher)
        (target / "mod.py").write_text("edited\n")
        assert _changed(watcher, fresh) == ["src/pkg/mod.py"]
        again = _token(watcher)
        other2 = tmp_path / "other2"
        other2.mkdir()
        subprocess.run(["umount", str(target)], check=True)
        subprocess.run(["mount", "--bind", str(other2), str(target)], check=True)
        assert watcher.since(again).get("all") is True  # another mount at the same point
    finally:
        subprocess.run(["umount", str(target)], check=True)
    assert watcher.since(fresh).get("all") is True


def test_the_file_system_under_a_root() -> None:
    table = [Mount("/", "ext4", "1"), Mount("/home", "nfs4", "2"), Mount("/home/me/fuse", "fuse.sshfs", "3"),
             Mount("/home2", "xfs", "4")]  # fmt: skip
    assert fstype_of("/home/me/proj", table) == "nfs4"
    assert fstype_of("/home/me/fuse/x", table) == "fuse.sshfs"
    assert fstype_of("/home2/x", table) == "xfs"  # not /home's
    assert fstype_of("/srv", table) == "ext4"
    assert mounts_below("/home/me", table) == {table[2]}
    assert mounts_below("/home/me", [*table, Mount("/home/me/fuse", "tmpfs", "5")]) != {table[2]}


# --- the watcher process --------------------------------------------------------------------------------


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A directory with a short path: a Unix socket's path must fit in 108 bytes."""
    path = Path(tempfile.mkdtemp(prefix="scw-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_the_watcher_process_starts_answers_and_stops(tmp_path: Path, short_dir: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    socket = str(short_dir / "w.sock")
    assert watch.ask(socket, "status") is None
    assert watch.start(context, socket)
    try:
        status = watch.ask(socket, "status")
        assert status is not None
        assert status["root"] == str(context.resolve())
        assert watch.running(short_dir) == [(socket, status)] or watch.running(short_dir)[0][0] == socket
        # a second watcher of the same root does not take over: the first one keeps answering
        assert watch.start(context, socket)
        again = watch.ask(socket, "status")
        assert again is not None
        assert again["pid"] == status["pid"]
    finally:
        assert watch.stop(socket)
    assert watch.ask(socket, "status") is None
    assert not os.path.exists(socket)


def _running_watcher(tmp_path: Path, short_dir: Path) -> tuple[Path, str, int]:
    """A watcher started on a new, empty context: the context, its socket, its pid."""
    context = tmp_path / "ctx"
    context.mkdir()
    socket = str(short_dir / "w.sock")
    assert watch.start(context, socket)
    status = watch.ask(socket, "status")
    assert status is not None
    return context, socket, int(status["pid"])


def test_sigterm_stops_the_watcher_at_once(tmp_path: Path, short_dir: Path) -> None:
    _, socket, pid = _running_watcher(tmp_path, short_dir)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while os.path.exists(socket) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(socket)


def test_a_watcher_whose_directory_was_removed_leaves_the_next_one_alone(
    tmp_path: Path, short_dir: Path
) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    socket = str(short_dir / "watch" / "w.sock")
    os.makedirs(os.path.dirname(socket))
    assert watch.start(context, socket)
    first = watch.ask(socket, "status")
    assert first is not None
    shutil.rmtree(short_dir / "watch")  # its lock file and socket go with it
    os.makedirs(os.path.dirname(socket))
    assert watch.start(context, socket)  # a second one starts: the first's lock is no longer there
    second = watch.ask(socket, "status")
    assert second is not None
    assert second["pid"] != first["pid"]
    os.kill(int(first["pid"]), signal.SIGTERM)  # the first ends: it must not remove the second's socket
    time.sleep(0.5)
    still = watch.ask(socket, "status")
    assert still is not None
    assert still["pid"] == second["pid"]  # the socket still answers, and as the second watcher
    assert watch.stop(socket)


def test_a_watcher_that_cannot_start_says_why_and_is_not_retried_at_once(
    tmp_path: Path, short_dir: Path
) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    socket = str(short_dir / "w.sock")
    assert not watch.start(not_a_dir, socket)
    assert watch.failure(socket) == f"{not_a_dir}: not a directory"
    old = time.time() - watch.RETRY_AFTER_S - 1
    os.utime(short_dir / "w.log", (old, old))
    assert watch.failure(socket) is None  # long enough ago: try again


def test_a_watcher_whose_socket_is_gone_exits(tmp_path: Path, short_dir: Path) -> None:
    context, socket, pid = _running_watcher(tmp_path, short_dir)
    os.unlink(socket)  # nobody can ask it anything now
    (context / "wake.txt").write_text("an event wakes it")
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[-1][:1] != "Z"


def test_a_client_that_trickles_its_request_is_cut_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(watcher_module, "REQUEST_TIMEOUT_S", 0.5)
    server, client = socketlib.socketpair()
    with server, client:
        client.sendall(b"sta")  # and never the rest
        answer: list[str | None] = []
        reader = threading.Thread(target=lambda: answer.append(watcher_module._request_line(server)))
        reader.start()
        reader.join(30)  # without the request timeout it would wait for the rest forever
        assert not reader.is_alive()
        assert answer == [None]
    server, client = socketlib.socketpair()
    with server, client:
        client.sendall(b"status\nmore")
        assert watcher_module._request_line(server) == "status"


def test_a_stale_socket_does_not_stop_a_new_watcher(tmp_path: Path, short_dir: Path) -> None:
    context = tmp_path / "ctx"
    context.mkdir()
    socket = str(short_dir / "w.sock")
    Path(socket).write_text("left by a watcher that was killed")
    assert watch.start(context, socket)
    assert watch.stop(socket)


# --- keys through a watcher: the same manifest as without one -------------------------------------------

DOCKERFILE = """\
FROM scratch AS deps
COPY requirements.txt /app/
FROM deps AS app
COPY src/ /app/src/
COPY *.cfg /app/
FROM scratch AS everything
COPY . /all/
"""
IGNORE = "build\n!build/keep\n*.log\n!keep.log\n**/__pycache__\n"


def _outcome(spec: TargetSpec, **how: object) -> object:
    """The public manifest of ``spec``, or the error computing it (a source moved away, say)."""
    try:
        return inputs.collect(spec, images=Images(), platform="linux/amd64", **how).public  # type: ignore[arg-type]
    except StagecacheError as exc:
        return str(exc)


def _count_walks(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The contexts walked from now on: a key taken from a memo walks none."""
    walks: list[Path] = []

    def counted(context: Path, rules: IgnoreRules, *, fifos: list[str] | None = None) -> list[Entry]:
        walks.append(context)
        return walk(context, rules, fifos=fifos)

    monkeypatch.setattr("stagecache.key.inputs.walk", counted)
    return walks


def _tree(root: Path, rng: random.Random) -> None:
    for rel in ["requirements.txt", "setup.cfg", "README.md", "keep.log", "debug.log",
                "src/app.py", "src/util/text.py", "src/util/__pycache__/text.pyc",
                "build/out.o", "build/keep/kept.o", "docs/guide.md"]:  # fmt: skip
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(rng.randrange(1, 200)))


def _mutations(root: Path, outside: Path, rng: random.Random) -> list[tuple[str, Callable[[], None]]]:
    """Named changes to make one at a time; each is a callable, chosen at random."""

    def files() -> list[Path]:
        return sorted(
            p for p in root.rglob("*") if p.is_file() and not p.is_symlink() and p.name != "Dockerfile"
        )

    def dirs() -> list[Path]:
        return sorted(p for p in root.rglob("*") if p.is_dir() and not p.is_symlink())

    def modify() -> None:
        rng.choice(files()).write_bytes(rng.randbytes(rng.randrange(1, 200)))

    def chmod() -> None:
        path = rng.choice(files())
        path.chmod(path.stat().st_mode ^ 0o100)

    def touch() -> None:
        os.utime(rng.choice(files()), (rng.randrange(1 << 30), rng.randrange(1 << 30)))

    def create() -> None:
        parent = rng.choice([root, *dirs()])
        name = rng.choice(["new.py", "x.log", "notes.cfg", "t.txt", "__pycache__"])
        (parent / f"{rng.randrange(100)}{name}").write_bytes(b"new")

    def delete() -> None:
        if candidates := [p for p in files() if p.name != ".dockerignore"]:
            rng.choice(candidates).unlink()

    def transient() -> None:
        temp = root / "src" / ".app.py.swp"
        temp.parent.mkdir(exist_ok=True)
        temp.write_bytes(b"swap")
        temp.unlink()

    def new_tree() -> None:
        base = rng.choice([root, *dirs()]) / f"d{rng.randrange(100)}" / "e"
        base.mkdir(parents=True, exist_ok=True)
        (base / "f.py").write_bytes(b"f")

    def move_dir() -> None:
        if candidates := [d for d in dirs() if d != root]:
            src = rng.choice(candidates)
            target = rng.choice([root, *[d for d in dirs() if src not in (d, *d.parents)]])
            dest = target / f"m{rng.randrange(1000)}"
            if not dest.exists():
                src.rename(dest)

    def move_out() -> None:
        if candidates := [d for d in dirs() if d != root]:
            rng.choice(candidates).rename(outside / f"o{rng.randrange(10**6)}")

    def move_in() -> None:
        incoming = outside / f"in{rng.randrange(10**6)}"
        (incoming / "sub").mkdir(parents=True)
        (incoming / "sub" / "f.py").write_bytes(b"in")
        incoming.rename(
            rng.choice([root, root / "src"] if (root / "src").is_dir() else [root]) / incoming.name
        )

    def change_outside() -> None:
        for path in outside.rglob("*.py"):
            path.write_bytes(b"changed outside")

    def symlink() -> None:
        link = root / f"link{rng.randrange(100)}"
        if not os.path.lexists(link):
            link.symlink_to(rng.choice(["src", "requirements.txt", "missing"]))

    def hardlink() -> None:
        source = rng.choice(files())
        link = rng.choice([root, *dirs()]) / f"h{rng.randrange(1000)}"
        if not os.path.lexists(link):
            os.link(source, link)

    def fifo() -> None:
        path = rng.choice([root, *dirs()]) / f"p{rng.randrange(1000)}"
        if not os.path.lexists(path):
            os.mkfifo(path)

    def replace() -> None:
        if len(candidates := [p for p in files() if p.name != ".dockerignore"]) >= 2:
            first, second = rng.sample(candidates, 2)
            first.rename(second)

    def ignore_file() -> None:
        with open(root / ".dockerignore", "a") as fh:
            fh.write(rng.choice(["docs\n", "!build/keep.o\n", "src/util\n", "*.md\n"]))

    return [(f.__name__, f) for f in (modify, chmod, touch, create, delete, transient, new_tree,
            move_dir, move_out, move_in, change_outside, symlink, hardlink, fifo, replace,
            ignore_file)]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_keys_through_a_watcher_match_keys_without_one(
    tmp_path: Path, short_dir: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Differential: after each random change, the manifest computed through the watcher (from a memo
    when it can) equals one computed from a fresh walk with no caches at all."""
    rng = random.Random(seed)
    root, outside = tmp_path / "ctx", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    _tree(root, rng)
    (root / ".dockerignore").write_text(IGNORE)
    (root / "Dockerfile").write_text(DOCKERFILE)
    specs = [TargetSpec(stage, root, root / "Dockerfile", stage) for stage in ("deps", "app", "everything")]
    walks = _count_walks(monkeypatch)
    socket = str(short_dir / "w.sock")
    assert watch.start(root, socket)
    digests = DigestCache.open(root, short_dir / "digests.marshal")

    def through_watcher(spec: TargetSpec) -> object:
        return _outcome(spec, digests=digests, memo=watch.ContextWatch(root, socket, short_dir / "memos"))

    def fresh(spec: TargetSpec) -> object:
        return _outcome(spec)

    skipped = 0
    try:
        for spec in specs:
            through_watcher(spec)
        for step in range(40):
            name, change = rng.choice(_mutations(root, outside, rng))
            change()
            for spec in specs:
                before = len(walks)
                got = through_watcher(spec)
                skipped += len(walks) == before
                assert got == fresh(spec), f"step {step}: {name}, target {spec.name}"
    finally:
        watch.stop(socket)
    assert skipped > 0, "no key was taken from a memo"


def test_changes_the_target_does_not_read_and_edits_of_what_it_reads_skip_the_walk(
    tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    _tree(root, random.Random(0))
    (root / ".dockerignore").write_text(IGNORE)
    (root / "Dockerfile").write_text(DOCKERFILE)
    spec = TargetSpec("deps", root, root / "Dockerfile", "deps")
    walks = _count_walks(monkeypatch)
    socket = str(short_dir / "w.sock")
    assert watch.start(root, socket)

    def key() -> str:
        watched = watch.ContextWatch(root, socket, short_dir / "memos")
        found = inputs.collect(spec, images=Images(), platform="linux/amd64", memo=watched)
        return str(found.public["files"])

    try:
        first = key()
        assert len(walks) == 1
        (root / "build" / "more.o").write_bytes(b"ignored")
        assert key() == first
        (root / "src" / "app.py").write_bytes(b"not read by deps")
        assert key() == first
        (root / "debug.log").unlink()
        assert key() == first
        assert len(walks) == 1
        (root / "requirements.txt").write_bytes(b"flask\n")  # read by the target: its row is redone
        second = key()
        assert second != first
        assert len(walks) == 1
        (root / "new.txt").write_bytes(b"new")  # new to the context: only a walk can tell who reads it
        assert key() == second
        assert len(walks) == 2
    finally:
        watch.stop(socket)


@pytest.fixture
def compare(tmp_path: Path, short_dir: Path) -> Iterator[Callable[[TargetSpec], None]]:
    """``compare(spec)``: the manifest through a watcher of ``tmp_path/ctx`` must equal a fresh one."""
    root = tmp_path / "ctx"
    root.mkdir()
    socket = str(short_dir / "w.sock")
    assert watch.start(root, socket)

    def check(spec: TargetSpec) -> None:
        watched = watch.ContextWatch(root, socket, short_dir / "memos")
        assert _outcome(spec, memo=watched) == _outcome(spec)

    yield check
    watch.stop(socket)


def test_targets_whose_stages_differ_only_in_a_base_stages_env_get_their_own_memos(
    tmp_path: Path, compare: Callable[[TargetSpec], None]
) -> None:
    root = tmp_path / "ctx"
    (root / "a.txt").write_text("A")
    (root / "b.txt").write_text("B")
    # both targets reach both a and b, with the same instructions: only what each starts FROM differs
    both = "COPY --from=a /x /x\nCOPY --from=b /x /x\nCOPY $SRC /\n"
    (root / "Dockerfile").write_text(
        f"FROM scratch AS a\nENV SRC=a.txt\nFROM scratch AS b\nENV SRC=b.txt\n"
        f"FROM a AS t1\n{both}FROM b AS t2\n{both}"
    )
    for stage in ("t1", "t2", "t1"):
        compare(TargetSpec(stage, root, root / "Dockerfile", stage))


def test_writes_through_another_hard_link_are_seen(
    tmp_path: Path, compare: Callable[[TargetSpec], None]
) -> None:
    root = tmp_path / "ctx"
    (root / "build").mkdir()
    (root / ".dockerignore").write_text("build\n")
    (root / "sel.txt").write_text("read\n")
    os.link(root / "sel.txt", root / "other.txt")  # in the context, unread
    os.link(root / "sel.txt", root / "build" / "copy.txt")  # ignored
    (root / "Dockerfile").write_text("FROM scratch\nCOPY sel.txt /\n")
    spec = TargetSpec("t", root, root / "Dockerfile")
    compare(spec)
    (root / "other.txt").write_text("through other\n")
    compare(spec)
    (root / "build" / "copy.txt").write_text("through build\n")
    compare(spec)
    (root / "other.txt").chmod(0o600)
    compare(spec)


def test_a_read_file_replaced_by_a_hard_link_is_watched_through_its_other_name(
    tmp_path: Path, compare: Callable[[TargetSpec], None]
) -> None:
    root = tmp_path / "ctx"
    outside = tmp_path / "outside.txt"
    (root / "sel.txt").write_text("one link\n")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY sel.txt /\n")
    spec = TargetSpec("t", root, root / "Dockerfile")
    compare(spec)
    outside.write_text("linked from outside\n")
    os.link(outside, root / ".sel.tmp")
    os.replace(root / ".sel.tmp", root / "sel.txt")  # an event for sel.txt: its row is redone
    compare(spec)
    with open(outside, "a") as fh:  # no event in the context at all
        fh.write("written outside\n")
    compare(spec)


def test_line_numbers_in_messages_follow_the_dockerfile(
    tmp_path: Path, compare: Callable[[TargetSpec], None]
) -> None:
    root = tmp_path / "ctx"
    (root / "Dockerfile").write_text("FROM scratch\nADD https://example.com/x.tgz /\n")
    spec = TargetSpec("t", root, root / "Dockerfile")
    compare(spec)
    (root / "Dockerfile").write_text("FROM scratch\n# a comment\n\nADD https://example.com/x.tgz /\n")
    compare(spec)  # the uncacheable reason names line 4 now


def test_removing_the_fifo_that_kept_an_excluded_directory_in_the_context(
    tmp_path: Path, compare: Callable[[TargetSpec], None]
) -> None:
    root = tmp_path / "ctx"
    (root / "d").mkdir()
    os.mkfifo(root / "d" / "p")
    (root / ".dockerignore").write_text("d\n!d/p\n")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /\n")
    spec = TargetSpec("t", root, root / "Dockerfile")
    compare(spec)
    (root / "d" / "p").unlink()
    compare(spec)


# --- the command line -----------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path, short_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A Dockerfile project; watchers and caches live in ``short_dir``, and none outlives the test."""
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(short_dir))
    monkeypatch.delenv("STAGECACHE_WATCH", raising=False)
    root = tmp_path / "proj"
    (root / "src").mkdir(parents=True)
    (root / "src" / "app.py").write_text("print('hi')\n")
    (root / "Dockerfile").write_text("FROM scratch\nCOPY src/ /app/\n")
    yield root
    main(["watch", "stop", "--all"], out=io.StringIO())


def _cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_watch_start_status_stop(project: Path, short_dir: Path) -> None:
    assert _cli("watch", "status")[1].endswith(f"0 watcher(s) running; sockets in {short_dir}/watch\n")
    assert _cli("watch", "start", "-C", str(project)) == (0, f"{project}: watching\n")
    assert _cli("watch", "start", "-C", str(project)) == (0, f"{project}: already watched\n")
    code, text = _cli("watch", "status")
    assert code == 0
    assert str(project) in text
    assert "1 watcher(s) running" in text
    code, text = _cli("watch", "status", "--json")
    (status,) = json.loads(text)
    assert status["root"] == str(project)
    assert status["directories"] == 2  # the context and src/
    assert _cli("watch", "stop", "-C", str(project)) == (0, f"{project}: watcher stopped\n")
    assert _cli("watch", "stop", "-C", str(project)) == (0, f"{project}: no watcher running\n")


def test_watch_start_is_refused_when_watchers_are_turned_off(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STAGECACHE_WATCH", "0")
    assert _cli("watch", "start", "-C", str(project))[0] == 2
    assert "STAGECACHE_WATCH turns watchers off" in capsys.readouterr().err


def test_watch_true_starts_a_watcher_and_the_next_key_skips_the_walk(
    engine: object, project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "pyproject.toml").write_text("[tool.stagecache]\nwatch = true\n")
    walks = _count_walks(monkeypatch)
    code, first = _cli("key", "-C", str(project))
    assert code == 0
    assert len(walks) == 1
    assert "1 watcher(s) running" in _cli("watch", "status")[1]
    assert _cli("key", "-C", str(project)) == (0, first)
    assert len(walks) == 1  # from the memo
    (project / "src" / "app.py").write_text("print('changed')\n")
    code, second = _cli("key", "-C", str(project))
    assert second != first
    assert len(walks) == 1  # the memo's row for app.py was redone
    monkeypatch.setenv("STAGECACHE_WATCH", "0")  # off: the key walks, whatever runs
    assert _cli("key", "-C", str(project)) == (0, second)
    assert len(walks) == 2


def test_watch_true_does_not_retry_a_watcher_that_just_failed(
    engine: object, project: Path, short_dir: Path
) -> None:
    (project / "pyproject.toml").write_text("[tool.stagecache]\nwatch = true\n")
    socket = watch.socket_path(short_dir / "watch", project)
    assert socket is not None
    os.makedirs(os.path.dirname(socket))
    Path(socket.removesuffix(".sock") + ".log").write_text("stagecache watcher: some reason\n")
    assert _cli("key", "-C", str(project))[0] == 0
    assert "0 watcher(s) running" in _cli("watch", "status")[1]
