"""`stagecache build` against the real engine: daemon hits, store hits, misses, damage and races."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from stagecache.app import resolver_for
from stagecache.engine.docker import Docker
from stagecache.key.spec import TargetSpec
from stagecache.project.settings import Target
from stagecache.store.directory import DirectoryStore

DOCKERFILE = """\
FROM python:3.11-slim AS base
WORKDIR /app
COPY requirements.txt ./
FROM base AS prod
COPY src/ src/
LABEL org.stagecache.test=1
FROM base AS dev
COPY src/ src/
COPY tests/ tests/
LABEL org.stagecache.test=1
"""


class Recording(Docker):
    """The real engine, remembering which heavy operations were asked of it."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def build(self, **kwargs: Any) -> Any:
        self.calls.append("build")
        return super().build(**kwargs)

    def bake(self, *args: Any, **kwargs: Any) -> Any:  # a build of several targets at once
        self.calls.append("build")
        return super().bake(*args, **kwargs)

    def save_file(self, image: str | Sequence[str], path: Path) -> None:
        self.calls.append("save")
        super().save_file(image, path)

    def save_stream(self, images: Sequence[str]) -> Any:  # how the store reads a save
        self.calls.append("save")
        return super().save_stream(images)

    def load(self, chunks: Iterable[bytes]) -> str:
        self.calls.append("load")
        return super().load(chunks)


def make_project(root: Path, run_id: str, big: int = 0) -> Path:
    files = {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": f"# {run_id}\n",  # unique per test run: no key is shared with other runs
        "src/app.py": "print('hello')\n",
        "tests/test_app.py": "def test(): pass\n",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    if big:
        (root / "src/blob.bin").write_bytes(os.urandom(big))
    return root


@pytest.fixture
def project(tmp_path: Path, run_id: str) -> Path:
    return make_project(tmp_path / "proj", run_id)


def target_of(project: Path, run_id: str, stage: str = "prod") -> Target:
    spec = TargetSpec(name=stage, context=project, dockerfile=project / "Dockerfile", stage=stage)
    return Target(spec=spec, repository=f"stagecache-test-{run_id}")


@pytest.fixture
def images(engine: Docker, run_id: str) -> Iterator[None]:
    yield
    done = engine.runner(
        ["docker", "images", "--quiet", "--filter", f"reference=stagecache-test-{run_id}"], check=False
    )
    ids = sorted(set(done.stdout.split()))
    if ids:
        engine.remove_image(*ids, force=True)


def remove_from_daemon(engine: Docker, image_id: str) -> None:
    engine.remove_image(image_id, force=True)
    assert engine.image_inspect(image_id) is None


@pytest.mark.usefixtures("images")
def test_miss_then_daemon_hit_then_store_hit(
    engine: Docker, project: Path, run_id: str, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path / "store")
    docker = Recording()
    resolver = resolver_for(docker, store=store)
    target = target_of(project, run_id)

    first = resolver.resolve(target, quiet_build=True)
    assert first.outcome == "built"
    assert first.stored
    # one build; the target saved, and (stage restore) the stages it builds on under keys of their own
    assert docker.calls[0] == "build"
    assert set(docker.calls[1:]) == {"save"}
    assert first.key in [e.key for e in store.entries()]
    assert all(e.key == first.key or e.target.startswith("prod/") for e in store.entries())

    docker.calls.clear()
    second = resolver.resolve(target, tags=[f"stagecache-test-{run_id}:ci"], quiet_build=True)
    assert second.outcome == "daemon"
    assert second.image_id == first.image_id
    assert docker.calls == []  # a hit is a retag: no build, no load, no save
    tagged = engine.image_inspect(f"stagecache-test-{run_id}:ci")
    assert tagged is not None
    assert tagged.id == first.image_id

    remove_from_daemon(engine, first.image_id)
    third = resolver_for(docker, store=store).resolve(target, quiet_build=True)
    assert third.outcome == "store"
    assert third.image_id == first.image_id
    assert docker.calls == ["load"]


@pytest.mark.usefixtures("images")
def test_change_in_copied_file_builds_again(
    engine: Docker, project: Path, run_id: str, tmp_path: Path
) -> None:
    resolver = resolver_for(engine, store=DirectoryStore(tmp_path / "store"))
    prod, dev = target_of(project, run_id, "prod"), target_of(project, run_id, "dev")
    first_prod, first_dev = resolver.resolve(prod, quiet_build=True), resolver.resolve(dev, quiet_build=True)
    (project / "tests/test_app.py").write_text("def test(): assert True\n")
    again_prod, again_dev = resolver.resolve(prod, quiet_build=True), resolver.resolve(dev, quiet_build=True)
    assert again_prod.outcome == "daemon"  # prod does not copy tests/
    assert again_prod.key == first_prod.key
    assert again_dev.outcome == "built"
    assert again_dev.key != first_dev.key


def own_layer(store: DirectoryStore, key: str) -> Path:
    """The file of the entry's last layer (the target's own, not a base image's)."""
    entry = store.get(key)
    assert entry is not None
    manifest = json.loads(store.blobs.path(entry.manifest_digest).read_bytes())
    return store.blobs.path(manifest["layers"][-1]["digest"])


@pytest.mark.usefixtures("images")
def test_corrupt_archive_is_removed_and_rebuilt(
    engine: Docker, project: Path, run_id: str, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path / "store")
    target = target_of(project, run_id)
    first = resolver_for(engine, store=store).resolve(target, quiet_build=True)
    blob = own_layer(store, first.key)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0xFF
    blob.write_bytes(bytes(data))
    remove_from_daemon(engine, first.image_id)

    warnings: list[str] = []

    class Collect:
        def step(self, target: str, message: str) -> None:
            pass

        def warn(self, message: str) -> None:
            warnings.append(message)

        def transfer(self, label: str, done: int, total: int | None) -> None:
            pass

    again = resolver_for(engine, store=store, reporter=Collect()).resolve(target, quiet_build=True)
    assert again.outcome == "built"
    assert any("damaged" in w or "digest" in w for w in warnings), warnings
    entry = store.get(first.key)
    assert entry is not None  # stored anew, whole
    assert store.verify() == []


@pytest.mark.usefixtures("images")
def test_truncated_archive_is_rebuilt(engine: Docker, project: Path, run_id: str, tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path / "store")
    target = target_of(project, run_id)
    first = resolver_for(engine, store=store).resolve(target, quiet_build=True)
    blob = own_layer(store, first.key)
    blob.write_bytes(blob.read_bytes()[: blob.stat().st_size // 3])
    remove_from_daemon(engine, first.image_id)
    again = resolver_for(engine, store=store).resolve(target, quiet_build=True)
    assert again.outcome == "built"
    assert store.verify() == []


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stagecache", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.usefixtures("images")
def test_concurrent_builds_of_one_key(engine: Docker, project: Path, run_id: str, tmp_path: Path) -> None:
    store = tmp_path / "store"
    args = ["build", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}", "--store", str(store),
            "--json", "--no-commit-tag", "-q", "prod"]  # fmt: skip
    procs = [cli(*args, cwd=project) for _ in range(4)]
    outputs = [p.communicate(timeout=600) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    results = [json.loads(out)[0] for out, _ in outputs]
    assert len({r["key"] for r in results}) == 1
    assert len({r["image_id"] for r in results}) == 1
    assert sorted(r["outcome"] for r in results).count("built") == 1
    assert DirectoryStore(store).get(results[0]["key"]) is not None
    assert list((store / "v2/tmp").iterdir()) == []
    assert DirectoryStore(store).verify() == []


@pytest.mark.usefixtures("images")
def test_sigkill_during_save_leaves_no_archive(engine: Docker, tmp_path: Path, run_id: str) -> None:
    project = make_project(tmp_path / "proj", run_id, big=64 << 20)  # a save long enough to be caught
    store = tmp_path / "store"
    args = ["build", "-f", "Dockerfile", "--repository", f"stagecache-test-{run_id}", "--store", str(store),
            "--no-commit-tag", "-q", "prod"]  # fmt: skip
    proc = cli(*args, cwd=project)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if any((store / "v2/tmp").glob("*.partial*")):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL, "the save ended before it could be interrupted"
    assert list((store / "v2/meta").iterdir()) == []  # blobs it wrote are no entry's: the next prune's

    again = cli(*args, "--json", cwd=project)
    out, err = again.communicate(timeout=600)
    assert again.returncode == 0, err
    assert json.loads(out)[0]["outcome"] == "daemon"  # the build had finished; only the save was lost
    assert json.loads(out)[0]["stored"] is True  # and the store gets the image now
    assert list((store / "v2/tmp").iterdir()) == []  # the dead writer's temp file is gone
    assert DirectoryStore(store).verify() == []
    kept = DirectoryStore(store)
    kept.prune(keep=10)  # the killed save's blobs, used by no entry, go
    assert set(kept.blobs.all()) == set().union(*(e.blobs() for e in kept.entries()))


@pytest.mark.usefixtures("images")
def test_images_prune_keeps_the_newest_key_tags_per_target(
    engine: Docker, project: Path, run_id: str, tmp_path: Path
) -> None:
    resolver = resolver_for(engine, store=None)
    target = target_of(project, run_id)
    refs = []
    for n in range(3):
        (project / "src/app.py").write_text(f"print({n})\n")
        refs.append(resolver.resolve(target, quiet_build=True).image)
        time.sleep(1.1)  # image creation times are in seconds
    mine = ["--repository", f"stagecache-test-{run_id}"]  # leave other projects' key tags alone
    dry = cli("images", "prune", "--keep", "1", "--dry-run", *mine, cwd=project)
    out, err = dry.communicate(timeout=300)
    assert dry.returncode == 0, err
    assert all(engine.image_inspect(ref) is not None for ref in refs)  # a dry run removes nothing
    assert f"would untag {refs[0]}" in out
    assert "fastapi-poetry-example" not in out
    done = cli("images", "prune", "--keep", "1", *mine, cwd=project)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err
    assert engine.image_inspect(refs[2]) is not None  # the newest stays
    assert engine.image_inspect(refs[0]) is None
    assert engine.image_inspect(refs[1]) is None
