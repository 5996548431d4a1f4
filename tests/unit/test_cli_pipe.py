"""A closed stdout (`stagecache store ls | head -1`) ends the run quietly: exit 0, nothing on stderr.

The store listed is big enough that its listing cannot fit in the pipe: the write must fail, so these
tests fail when the closed pipe is not handled (exit 2, "stagecache: error: Broken pipe", or a
traceback from the interpreter's last flush)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from stagecache.cli import main
from stagecache.store.directory import DirectoryStore
from tests.storekit import image, put

PIPE_BUFFER = 64 * 1024


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipe") / "store"
    store = DirectoryStore(root)
    for i in range(150):
        put(store, f"sha256:{i:064x}", image([b"x"], str(i)), target=f"t{i}", ref="r" * 1000 + ":x")
    return root


def _env(tmp_path: Path) -> dict[str, str]:
    """stdout buffered as it is for users (PYTHONUNBUFFERED would hide a failing flush at exit)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return {**env, "STAGECACHE_CACHE_DIR": str(tmp_path / "cache"), "NO_COLOR": "1"}


def _stagecache(*args: str) -> str:
    return " ".join([sys.executable, "-m", "stagecache", *args])


@pytest.mark.parametrize("json", [[], ["--json"]])
def test_head_closing_the_pipe_ends_the_run_quietly(big_store: Path, tmp_path: Path, json: list[str]) -> None:
    command = _stagecache("store", "ls", "--store", str(big_store), *json)
    whole = subprocess.run(command, shell=True, capture_output=True, env=_env(tmp_path), check=True)
    assert len(whole.stdout) > 2 * PIPE_BUFFER  # more than the pipe holds: the write must fail
    done = subprocess.run(
        ["bash", "-c", f'set -o pipefail; {command} | head -1; echo "status ${{PIPESTATUS[*]}}"'],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=60,
    )
    assert done.stderr == ""
    assert done.stdout.splitlines()[-1] == "status 0 0"
    assert len(done.stdout.splitlines()) == 2  # head's one line, then the status


@pytest.mark.parametrize("listing", ["big", "small"])  # small: all of it is still buffered at the end
def test_a_pipe_closed_before_the_first_write(big_store: Path, tmp_path: Path, listing: str) -> None:
    store = big_store if listing == "big" else tmp_path / "empty"
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "stagecache", "store", "ls", "--store", str(store)],
            stdout=write,
            stderr=subprocess.PIPE,
            text=True,
            env=_env(tmp_path),
            timeout=60,
        )
    finally:
        os.close(write)
    assert (done.returncode, done.stderr) == (0, "")


def test_a_broken_pipe_elsewhere_is_an_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only stdout's reader going away is quiet: a pipe to a child or a socket breaking is a failure."""

    def command(args: object, ctx: object) -> int:
        raise BrokenPipeError(32, "Broken pipe")

    main_module = importlib.import_module("stagecache.cli.main")
    monkeypatch.setattr(main_module, "handler", lambda name: command)
    assert main(["store", "ls"]) == 2
    assert capsys.readouterr().err == "stagecache: error: Broken pipe\n"
