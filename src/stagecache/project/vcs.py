"""The commit a build belongs to: from the CI system's variables, else from a clean git checkout."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from .. import process

if TYPE_CHECKING:
    import subprocess

# Checked in order; each CI system documents its own variable.
CI_SHA_VARIABLES = (
    "GITHUB_SHA",  # GitHub Actions
    "CI_COMMIT_SHA",  # GitLab CI
    "CIRCLE_SHA1",  # CircleCI
    "BUILDKITE_COMMIT",  # Buildkite
    "GIT_COMMIT",  # Jenkins (git plugin)
)
_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def commit_sha(root: Path, env: Mapping[str, str] | None = None) -> str | None:
    """The full commit SHA, or None when the tree has uncommitted changes or is not a git checkout."""
    return CommitProbe(root, env).result()


class CommitProbe:
    """:func:`commit_sha`, started now and read later.

    The two git processes (the HEAD commit, and whether the tree is clean) start at once and run on
    another core while stagecache computes keys; on a large checkout ``git status`` alone can take a
    tenth of a second.
    """

    def __init__(self, root: Path, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self._sha: str | None = None
        self._done = False
        self._procs: list[subprocess.Popen[str]] = []
        for name in CI_SHA_VARIABLES:
            value = env.get(name, "").strip().lower()
            if _SHA.fullmatch(value):
                self._sha, self._done = value, True
                return
        # No optional locks: git status would otherwise take .git/index.lock and may rewrite the index,
        # while the key's walk may be reading .git (a context that does not exclude it).
        git = ["git", "--no-optional-locks", "-C", str(root)]
        status = [*git, "status", "--porcelain", "--untracked-files=normal", "--", "."]
        try:
            for argv in ([*git, "rev-parse", "HEAD"], status):
                self._procs.append(
                    process.spawn(argv, stdout=process.PIPE, stderr=process.DEVNULL, text=True)
                )
        except OSError:  # no git: not a commit we can name
            self._done = True

    def close(self) -> None:
        """Stop git if it still runs (the result was not needed after all)."""
        for proc in self._procs:
            proc.kill()
            proc.communicate()
        self._procs = []
        self._done = True

    def result(self) -> str | None:
        """The SHA (waiting for git if it is still running), or None."""
        outputs = [proc.communicate()[0] for proc in self._procs]  # reaps them, also after an OSError
        if not self._done:
            head, dirty = outputs
            clean = all(proc.returncode == 0 for proc in self._procs) and not dirty.strip()
            self._sha = head.strip() if clean and _SHA.fullmatch(head.strip()) else None
            self._done = True
        self._procs = []
        return self._sha
