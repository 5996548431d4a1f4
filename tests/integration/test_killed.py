"""A stagecache killed with SIGKILL takes its docker children with it, and its build names no image
with a key. (That BuildKit is never given the key tag, so that even an orphaned build could not name
an image the post-build key check never saw, is tests/unit/test_resolver.py's.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from stagecache.engine.docker import Docker


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid``, from /proc."""
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                found.append(int(entry))
                todo.append(int(entry))
    return found


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:  # it has just ended
        return b""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_build_leaves_no_process_and_no_key_image(
    engine: Docker, tmp_path: Path, run_id: str
) -> None:
    (tmp_path / "Dockerfile").write_text(f"FROM python:3.11-slim AS dev\nRUN echo {run_id} && sleep 40\n")
    repository = f"stagecache-test-killed-{run_id}"
    env = {**os.environ, "STAGECACHE_CACHE_DIR": str(tmp_path / "cache")}
    args = ["build", "-f", "Dockerfile", "--repository", repository, "--store", str(tmp_path / "store"),
            "--no-commit-tag", "dev"]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "stagecache", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        children: list[int] = []
        while time.monotonic() < deadline and not children:  # wait for the docker CLI to be at work
            children = [c for c in _children(proc.pid) if b"buildx" in _cmdline(c)]
            time.sleep(0.2)
        assert children, "no docker buildx build started"
        time.sleep(2)  # into the RUN step
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # They get SIGTERM as stagecache dies; an orphan would instead run on to the end of the RUN step.
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and any(_alive(c) for c in children):
            time.sleep(0.2)
        assert not any(_alive(c) for c in children), "the docker CLI outlived stagecache"
        done = engine.runner(
            ["docker", "images", "--quiet", "--filter", f"reference={repository}"], check=False
        )
        assert done.stdout.split() == []  # no key image, nor any other tag of it
        store = tmp_path / "store" / "v1" / "meta"
        assert not store.exists() or list(store.iterdir()) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        done = engine.runner(
            ["docker", "images", "--quiet", "--filter", f"reference={repository}"], check=False
        )
        for image in set(done.stdout.split()):
            engine.remove_image(image, force=True)
