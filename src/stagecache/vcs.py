"""The commit a build belongs to: from the CI system's variables, else from a clean git checkout."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

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
    env = os.environ if env is None else env
    for name in CI_SHA_VARIABLES:
        value = env.get(name, "").strip().lower()
        if _SHA.fullmatch(value):
            return value
    import subprocess  # imported here: not needed when CI names the commit

    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=False
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=normal", "--", "."],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return None
    if dirty.returncode != 0 or dirty.stdout.strip():
        return None
    sha = head.stdout.strip()
    return sha if _SHA.fullmatch(sha) else None
