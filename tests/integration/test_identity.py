"""Identity on the real engine: a store entry serves any checkout, and the commit-SHA tag never lands
on the dev image."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagecache.engine.docker import Docker

DOCKERFILE = """\
FROM python:3.11-slim AS base
WORKDIR /app
COPY app.py .

FROM base AS dev
RUN echo dev > /stage

FROM base AS prod
RUN echo prod > /stage
"""


def stagecache(*args: str, cwd: Path, env: dict[str, str] | None = None) -> dict[str, dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "-m", "stagecache", *args, "--json"],
        cwd=cwd,
        env={**os.environ, "STAGECACHE_CACHE_DIR": str(cwd.parent / "cache"), **(env or {})},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return {str(r["target"]): r for r in results}


@pytest.fixture
def checkouts(tmp_path: Path, run_id: str, engine: Docker) -> Iterator[tuple[Path, Path]]:
    """The same project in two folders of different names (a CI runner's and a laptop's)."""
    first = tmp_path / f"sc-one-{run_id}"
    first.mkdir()
    (first / "Dockerfile").write_text(DOCKERFILE)
    (first / "app.py").write_text(f"print('{run_id}')\n")
    second = tmp_path / f"sc-two-{run_id}"
    shutil.copytree(first, second)
    yield first, second
    for folder in (first, second):
        done = engine.runner(
            ["docker", "images", "--quiet", "--filter", f"reference={folder.name}-*"], check=False
        )
        for image in sorted(set(done.stdout.split())):
            engine.remove_image(image, force=True)


def test_an_entry_stored_from_one_checkout_loads_in_another(
    engine: Docker, checkouts: tuple[Path, Path], tmp_path: Path
) -> None:
    first, second = checkouts
    store = str(tmp_path / "store")
    args = ["build", "-f", "Dockerfile", "--store", store, "--no-commit-tag", "dev"]
    built = stagecache(*args, cwd=first)["dev"]
    assert built["outcome"] == "built"
    engine.remove_image(str(built["image"]), force=True)  # a fresh runner: the image is gone

    loaded = stagecache(*args, cwd=second)
    dev = loaded["dev"]
    assert (dev["outcome"], dev["key"], dev["image_id"]) == ("store", built["key"], built["image_id"])
    info = engine.image_inspect(str(dev["image"]))
    assert info is not None
    assert str(dev["image"]).startswith(f"{second.name}-dev:sc-")
    assert engine.image_inspect(str(built["image"])) is None  # the load named nothing of the first checkout's


def test_the_commit_tag_goes_to_prod_and_dev_gets_its_own(
    engine: Docker, checkouts: tuple[Path, Path], tmp_path: Path
) -> None:
    first, _ = checkouts
    sha = "c0ffee" * 6 + "c0ff"
    args = ["build", "-f", "Dockerfile", "--repository", f"{first.name}-app", "--no-store", "dev", "prod"]
    results = stagecache(*args, cwd=first, env={"GITHUB_SHA": sha})
    assert f"{first.name}-app:{sha}" in results["prod"]["tags"]
    assert f"{first.name}-app:{sha}-dev" in results["dev"]["tags"]
    shipped = engine.image_inspect(f"{first.name}-app:{sha}")
    assert shipped is not None
    assert shipped.id == results["prod"]["image_id"]
