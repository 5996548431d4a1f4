"""The store's blobs on the real engine (every lane: DOCKER_HOST names it): two targets sharing a
dependency stage keep that stage's layers once, both load back from the store and run, and a prune
to one entry's size removes the other's blobs and nothing the kept one needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stagecache.engine.docker import Docker
from stagecache.store.directory import DirectoryStore

DOCKERFILE = """\
FROM python:3.11-slim AS deps
RUN echo {run_id} > /deps.txt && head -c 3000000 /dev/urandom > /deps.bin
FROM deps AS prod
COPY src/ /app/src/
LABEL org.stagecache.test=1
FROM deps AS dev
COPY src/ /app/src/
COPY tests/ /app/tests/
LABEL org.stagecache.test=1
"""
DEPS_BYTES = 3_000_000  # random: its layer is stored about this big, compressed or not


@pytest.fixture
def project(tmp_path: Path, run_id: str) -> Path:
    root = tmp_path / "proj"
    files = {
        "Dockerfile": DOCKERFILE.format(run_id=run_id),
        "src/app.py": "print('hello')\n",
        "tests/test_app.py": "def test(): pass\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.fixture
def repository(engine: Docker, run_id: str) -> Iterator[str]:
    name = f"stagecache-test-layers-{run_id}"
    yield name
    _remove_images(engine, name)


def _remove_images(engine: Docker, repository: str) -> None:
    done = engine.runner(["docker", "images", "--quiet", "--filter", f"reference={repository}"], check=False)
    ids = sorted(set(done.stdout.split()))
    if ids:
        engine.remove_image(*ids, force=True)


def build(project: Path, store: Path, repository: str, *targets: str) -> list[dict[str, Any]]:
    args = ["build", "-f", "Dockerfile", "--repository", repository, "--store", str(store), "--json",
            "--no-commit-tag", "-q", *targets]  # fmt: skip
    env = {**os.environ, "STAGECACHE_CACHE_DIR": str(project.parent / "cache")}
    done = subprocess.run([sys.executable, "-m", "stagecache", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    results: list[dict[str, Any]] = json.loads(done.stdout)
    return results


def run_in(engine: Docker, image: str, *command: str) -> str:
    done = engine.runner(["docker", "run", "--rm", image, *command], check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_shared_layers_are_kept_once_load_back_and_prune_by_blob(
    engine: Docker, project: Path, repository: str, run_id: str, tmp_path: Path
) -> None:
    root = tmp_path / "store"
    (prod,) = build(project, root, repository, "prod")
    (dev,) = build(project, root, repository, "dev")
    assert (prod["outcome"], prod["stored"], dev["outcome"], dev["stored"]) == ("built", True, "built", True)
    store = DirectoryStore(root)
    entry_prod, entry_dev = store.get(prod["key"]), store.get(dev["key"])
    assert entry_prod is not None
    assert entry_dev is not None

    # the deps stage's layer is one blob both entries use; dev's save added only what is its own
    shared = entry_prod.blobs() & entry_dev.blobs()
    assert any(store.blobs.size(d) > DEPS_BYTES * 0.9 for d in shared), "the deps layer is not shared"
    assert entry_dev.stored_bytes > DEPS_BYTES
    assert entry_dev.new_bytes < DEPS_BYTES / 10
    assert store.total_bytes([entry_prod, entry_dev]) < entry_prod.stored_bytes + entry_dev.stored_bytes
    index = json.loads((root / "v2/index.json").read_text())
    assert {m["digest"] for m in index["manifests"]} >= {
        entry_prod.manifest_digest,
        entry_dev.manifest_digest,
    }

    # without the images, both come from the store, and run
    _remove_images(engine, repository)
    assert engine.image_inspect(prod["image_id"]) is None
    again = {r["target"]: r for r in build(project, root, repository, "prod", "dev")}
    assert {t: r["outcome"] for t, r in again.items()} == {"prod": "store", "dev": "store"}
    assert again["prod"]["image_id"] == prod["image_id"]
    assert again["dev"]["image_id"] == dev["image_id"]
    for result in again.values():
        assert run_in(engine, result["image"], "cat", "/deps.txt").strip() == run_id
    assert run_in(engine, again["dev"]["image"], "ls", "/app/tests").split() == ["test_app.py"]
    verify = subprocess.run([sys.executable, "-m", "stagecache", "store", "verify", "--store", str(root)],
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # a prune to dev's size keeps dev (used last) alone; blobs no remaining entry uses are gone
    store.touch(entry_dev)
    own_prod = entry_prod.blobs() - entry_dev.blobs()
    removed = store.prune(max_size=store.total_bytes([entry_dev]))
    assert prod["key"] in {e.key for e in removed}
    assert [e.key for e in store.entries()] == [dev["key"]]
    assert set(store.blobs.all()) == entry_dev.blobs()
    assert not any(store.blobs.has(d) for d in own_prod)
    assert all(store.blobs.has(d) for d in shared)
    index = json.loads((root / "v2/index.json").read_text())
    assert [m["digest"] for m in index["manifests"]] == [entry_dev.manifest_digest]

    _remove_images(engine, repository)
    (kept,) = build(project, root, repository, "dev")
    assert (kept["outcome"], kept["image_id"]) == ("store", dev["image_id"])
    assert run_in(engine, kept["image"], "cat", "/deps.txt").strip() == run_id
    assert DirectoryStore(root).verify() == []
