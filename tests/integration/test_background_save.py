"""Saves beside the command, on the real engine: the miss's line comes before the save's; the save
is whole before the command exits; Ctrl-C at any moment of it leaves a store whose every entry loads."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker
from stagecache.store.directory import DirectoryStore


def _project(tmp_path: Path, run_id: str) -> list[str]:
    # a 48 MB layer of random bytes: a save long enough to be interrupted in the middle
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim AS dev\n"
        f"RUN echo {run_id} && head -c 48000000 /dev/urandom > /blob\n"
        "COPY app.py /app/\n"
    )
    (tmp_path / "app.py").write_text("print('v1')\n")
    repository = f"stagecache-test-bgsave-{run_id}"
    return ["build", "-f", "Dockerfile", "--repository", repository, "--store", str(tmp_path / "store"),
            "--no-commit-tag", "dev"]  # fmt: skip


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "STAGECACHE_CACHE_DIR": str(tmp_path / "cache")}


def test_the_build_is_reported_before_the_save_and_the_save_is_whole_at_exit(
    engine: Docker, tmp_path: Path, run_id: str
) -> None:
    args = _project(tmp_path, run_id)
    done = subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    finished = next(i for i, line in enumerate(lines) if line.startswith("dev: done"))
    stored = next(i for i, line in enumerate(lines) if "stored 1 image in the store:" in line)
    assert finished < stored  # the command went on while the image was saved
    assert re.search(r"[0-9.]+ [kMG]B new of [0-9.]+ [kMG]B, [0-9.]+s", lines[stored])
    store = DirectoryStore(tmp_path / "store")
    assert [e.target for e in store.entries()] == ["dev"]
    assert store.verify() == []
    engine.remove_image(store.entries()[0].image_id, force=True)
    again = subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=tmp_path, env=_env(tmp_path),
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert " store " in again.stdout  # loaded from what the background save wrote


def test_ctrl_c_during_the_save_leaves_a_store_whose_entries_all_load(
    engine: Docker, tmp_path: Path, run_id: str
) -> None:
    args = _project(tmp_path, run_id)
    for delay in (0.0, 0.3, 1.0):  # early in the save, in its middle, near its end
        (tmp_path / "app.py").write_text(f"print({delay!r})\n")
        proc = subprocess.Popen([sys.executable, "-m", "stagecache", *args], cwd=tmp_path, env=_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the build's result line: the save has just been handed over
        assert line.startswith("dev "), line
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130), err  # 0: the save had already ended
        assert "Traceback" not in err
    (tmp_path / "app.py").write_text("print('whole')\n")  # and one save left to end
    done = subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr
    store = DirectoryStore(tmp_path / "store")
    assert store.verify() == []
    assert store.problems() == []
    assert store.entries()
    for entry in store.entries():  # every record there is whole: its image loads
        engine.remove_image(entry.image_id, force=True)
        loaded = engine.load(store.load_stream(entry))
        assert entry.image_id in loaded or engine.image_inspect(entry.image_id) is not None
    store.prune(max_size=1 << 40)  # what an interrupted save wrote without a record is swept
    used = set().union(*(e.blobs() for e in store.entries())) if store.entries() else set()
    assert set(store.blobs.all()) == used


def _test_project(tmp_path: Path, run_id: str, exit_code: int) -> Path:
    root = tmp_path / f"overlap-{exit_code}"
    root.mkdir()
    (root / "Dockerfile").write_text(
        "FROM python:3.11-slim AS dev\n"
        f"RUN echo {run_id} {exit_code} && head -c 48000000 /dev/urandom > /blob\n"
        "COPY run.sh /run.sh\n"
    )
    (root / "run.sh").write_text(f"echo tests-start\nsleep 6\necho tests-end\nexit {exit_code}\n")
    (root / "compose.yaml").write_text(
        f"name: bgsave-{run_id}\nservices:\n  tests:\n    build: {{context: ., target: dev}}\n"
        f"    image: stagecache-test-bgsave-{run_id}:dev-{exit_code}\n"
    )
    return root


@pytest.mark.parametrize("exit_code", [0, 3])
def test_the_save_runs_beside_the_tests_and_is_whole_whatever_they_return(
    engine: Docker, tmp_path: Path, run_id: str, exit_code: int
) -> None:
    root = _test_project(tmp_path, run_id, exit_code)
    store = tmp_path / "store"
    # one stream for stagecache's lines and the tests' output, so that their order is their time's
    done = subprocess.run([sys.executable, "-m", "stagecache", "test", "--store", str(store), "tests", "--",
                           "sh", "/run.sh"], cwd=root, env=_env(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=600)  # fmt: skip
    try:
        assert done.returncode == exit_code, done.stdout
        lines = done.stdout.splitlines()
        stored = next(i for i, line in enumerate(lines) if "stored 1 image in the store:" in line)
        started = next(i for i, line in enumerate(lines) if line.strip().endswith("tests-start"))
        ended = next(i for i, line in enumerate(lines) if line.strip().endswith("tests-end"))
        assert started < stored < ended, done.stdout  # saved while the tests ran
        entries = DirectoryStore(store).entries()
        assert [e.target for e in entries if "/" not in e.target] == ["tests"]
        assert DirectoryStore(store).verify() == []
    finally:
        engine.untag_repository(f"stagecache-test-bgsave-{run_id}")
