"""The commit a build belongs to, from a real git checkout (git is on every machine that runs CI)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from stagecache.project.vcs import CommitProbe, commit_sha

NO_CI: dict[str, str] = {}


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return done.stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    _git(tmp_path, "init", "-q")
    (tmp_path / "app.py").write_text("print('hi')\n")
    _git(tmp_path, "add", "app.py")
    _git(tmp_path, "commit", "-q", "-m", "one")
    return tmp_path


def test_clean_checkout_names_its_commit(repo: Path) -> None:
    assert commit_sha(repo, NO_CI) == _git(repo, "rev-parse", "HEAD")


def test_uncommitted_changes_name_no_commit(repo: Path) -> None:
    (repo / "app.py").write_text("print('changed')\n")
    assert commit_sha(repo, NO_CI) is None


def test_untracked_file_names_no_commit(repo: Path) -> None:
    (repo / "new.py").write_text("")
    assert commit_sha(repo, NO_CI) is None


def test_not_a_checkout(tmp_path: Path) -> None:
    assert commit_sha(tmp_path, NO_CI) is None


def test_ci_variable_wins_without_running_git(tmp_path: Path) -> None:
    sha = "A" * 40
    probe = CommitProbe(tmp_path, {"GITHUB_SHA": sha})
    assert probe.result() == sha.lower()
    assert commit_sha(tmp_path, {"CI_COMMIT_SHA": "not-a-sha"}) is None  # then git decides: no checkout


def test_probe_result_is_read_once_and_kept(repo: Path) -> None:
    probe = CommitProbe(repo, NO_CI)
    sha = _git(repo, "rev-parse", "HEAD")
    assert probe.result() == sha
    (repo / "app.py").write_text("changed after the probe was read\n")
    assert probe.result() == sha  # the answer for this run does not move under it
