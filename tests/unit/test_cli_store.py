"""`stagecache store ls|prune|verify` on a store made here (no engine needed)."""

from __future__ import annotations

import io
import json
import os
import re
import time
from pathlib import Path

import pytest

from stagecache.cli import main
from stagecache.store.directory import DirectoryStore
from tests.storekit import image, noise, put

KEYS = ["sha256:" + c * 64 for c in "abc"]
DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    s = DirectoryStore(root)
    for i, key in enumerate(KEYS):
        put(s, key, image([noise(5000 + i)], f"t{i}"), target=f"t{i}", ref="repo:x")
        os.utime(s.meta_path(key), (time.time() + 100 + i, time.time() + 100 + i))  # c is the newest
    return root


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out=out), out.getvalue()


def test_ls_lists_most_recently_used_first(store: Path) -> None:
    code, text = cli("store", "ls", "--store", str(store))
    assert code == 0
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["KEY", "TARGET", "REPOSITORY"]
    assert [line.split()[1] for line in lines[1:4]] == ["t2", "t1", "t0"]
    assert lines[-1].startswith("3 entries")
    code, text = cli("store", "ls", "--json", "--store", str(store))
    assert [e["target"] for e in json.loads(text)] == ["t2", "t1", "t0"]


def test_prune_keep_and_dry_run(store: Path) -> None:
    code, text = cli("store", "prune", "--keep", "1", "--dry-run", "--store", str(store))
    assert code == 0
    assert "would remove 2 entries" in text
    assert len(DirectoryStore(store).entries()) == 3
    code, text = cli("store", "prune", "--keep", "1", "--store", str(store))
    assert [e.target for e in DirectoryStore(store).entries()] == ["t2"]


def test_prune_needs_a_limit(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = cli("store", "prune", "--store", str(store))
    assert code == 2
    assert "give --max-size, --keep or --older-than" in capsys.readouterr().err


def own_blob(store: Path, key: str) -> Path:
    """The file of the layer only this entry uses."""
    s = DirectoryStore(store)
    entry = s.get(key)
    assert entry is not None
    layer = next(d for name, d, size, _ in entry.members if size >= 5000)
    return s.blobs.path(layer)


def test_verify_reports_and_removes_damage(store: Path) -> None:
    own_blob(store, KEYS[0]).write_bytes(b"garbage")
    code, text = cli("store", "verify", "--store", str(store))
    assert code == 1
    assert re.search(r"t0: blob sha256:\w+ is damaged; removed", text), text
    assert "2 entries ok, 1 damaged and removed" in text
    assert cli("store", "verify", "--store", str(store))[0] == 0


def test_stray_files_and_bad_records_are_reported_then_repaired(store: Path) -> None:
    base = DirectoryStore(store).base
    (base / "blobs" / "sha256" / "notakey.tar.zst").write_bytes(b"x")
    record = base / "meta" / f"{KEYS[1].removeprefix('sha256:')}.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "stored_bytes": "many"}))
    code, listed = cli("store", "ls", "--store", str(store))  # neither stops an ordinary command
    assert code == 0
    assert "2 entries" in listed  # of three, the bad one skipped
    code, text = cli("store", "verify", "--store", str(store))
    assert code == 1
    assert "notakey.tar.zst: not a blob of this store (a stray file); skipped" in text
    assert "field 'stored_bytes' is missing or wrong" in text
    code, text = cli("store", "verify", "--repair", "--store", str(store))
    assert code == 1
    assert "2 other problem(s) removed" in text
    assert cli("store", "verify", "--store", str(store))[0] == 0
    assert not record.exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["store", "ls", "--store", "{store}", "--json"],
        ["store", "--store", "{store}", "ls", "--json"],  # before the action, as `docker image` takes it
        ["store", "--store", "/nonexistent", "ls", "--store", "{store}", "--json"],  # the later one wins
    ],
)
def test_store_options_before_or_after_the_action(store: Path, argv: list[str]) -> None:
    code, out = cli(*(word.format(store=store) for word in argv))
    assert code == 0
    assert [e["key"] for e in json.loads(out)] == [KEYS[2], KEYS[1], KEYS[0]]


def test_ls_json_dates_are_the_tables_dates(store: Path) -> None:
    _, text = cli("store", "ls", "--store", str(store))
    table_dates = [line.split()[-2:] for line in text.splitlines()[1:4]]
    _, text = cli("store", "ls", "--json", "--store", str(store))
    entries = json.loads(text)
    assert [[e["created"], e["last_used"]] for e in entries] == table_dates
    assert all(DATE.fullmatch(d) for pair in table_dates for d in pair)


def test_prune_and_verify_json(store: Path) -> None:
    code, text = cli("store", "prune", "--keep", "1", "--dry-run", "--json", "--store", str(store))
    assert code == 0
    data = json.loads(text)
    assert data["dry_run"] is True
    assert [e["target"] for e in data["removed"]] == ["t1", "t0"]
    assert all(DATE.fullmatch(e["last_used"]) for e in data["removed"])
    own_blob(store, KEYS[1]).write_bytes(b"garbage")
    code, text = cli("store", "verify", "--json", "--store", str(store))
    assert code == 1
    data = json.loads(text)
    assert data["ok"] == 2
    assert [d["target"] for d in data["damaged"]] == ["t1"]
    assert re.fullmatch(r"blob sha256:\w+ is damaged", data["damaged"][0]["problem"])


def test_project_dir_before_the_command_finds_the_projects_store(
    store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`stagecache -C DIR store ls`: the store named in DIR's pyproject.toml, from anywhere."""
    monkeypatch.delenv("STAGECACHE_STORE", raising=False)
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))  # the default store, for once empty
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.stagecache]\nstore = "{store}"\n')
    monkeypatch.chdir(tmp_path)
    for argv in (
        ["-C", str(project), "store", "ls", "--json"],
        ["store", "ls", "-C", str(project), "--json"],
    ):
        code, out = cli(*argv)
        assert code == 0
        assert [e["target"] for e in json.loads(out)] == ["t2", "t1", "t0"]
    code, out = cli("store", "ls", "--json")  # without -C: not the project's store
    assert json.loads(out) == []


def test_store_takes_only_its_own_options(store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for option in (["--build-arg", "X=1"], ["--file", "Dockerfile"], ["--no-store"], ["--repository", "r"]):
        code, _ = cli("store", "ls", "--store", str(store), *option)
        assert code == 2
        err = capsys.readouterr().err
        assert err.startswith("usage: stagecache store ls ")
        assert f"unrecognized arguments: {' '.join(option)}" in err
