"""Two targets that miss, built in one `docker buildx bake` against the real engine (any lane).

The stage they share writes a random value: one solve gives both images the same value; each target
keeps its own key, key tag and image tag.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from stagecache.app import resolver_for
from stagecache.build import build_targets
from stagecache.engine.api import EngineAPI
from stagecache.engine.docker import Docker
from stagecache.key.spec import TargetSpec
from stagecache.process import Completed
from stagecache.project.settings import Target
from stagecache.refs import KEY_LABEL, TARGET_LABEL
from stagecache.store.directory import DirectoryStore

DOCKERFILE = """\
FROM python:3.11-slim AS deps
COPY requirements.txt /req.txt
RUN head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /deps-random
FROM deps AS prod
COPY app.py /app.py
LABEL org.stagecache.test=1
FROM deps AS dev
COPY app.py tests.py /
LABEL org.stagecache.test=1
"""


class Counted(Docker):
    """The real engine, counting builds and bakes."""

    def __init__(self) -> None:
        super().__init__(api=EngineAPI.detect())
        self.calls: list[str] = []

    def build(self, **kwargs: Any) -> Completed:
        self.calls.append("build")
        return super().build(**kwargs)

    def bake(
        self, definition: Mapping[str, Any], targets: Sequence[str], *, metadata: Path, quiet: bool = False
    ) -> Completed:
        self.calls.append("bake")
        return super().bake(definition, targets, metadata=metadata, quiet=quiet)


@pytest.mark.usefixtures("images")
def test_two_targets_sharing_a_stage_solve_it_once(engine: Docker, tmp_path: Path, run_id: str) -> None:
    root = tmp_path / "proj"
    root.mkdir()
    files = {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": f"# {run_id}\n",
        "app.py": "v1\n",
        "tests.py": "t\n",
    }
    for name, text in files.items():
        (root / name).write_text(text)
    repository = f"stagecache-test-{run_id}"
    targets = [
        Target(TargetSpec(stage, root, root / "Dockerfile", stage), repository, image=f"{repository}:{stage}")
        for stage in ("prod", "dev")
    ]
    docker = Counted()
    resolver = resolver_for(docker, DirectoryStore(tmp_path / "store"))
    results = build_targets(resolver, targets, quiet=True)
    assert docker.calls == ["bake"]
    values = []
    for target, result in zip(targets, results, strict=True):
        assert result.outcome == "built"
        assert result.key == resolver.key(target)[0]
        for ref in (result.image, f"{repository}:{target.name}"):
            info = docker.image_inspect(ref)
            assert info is not None
            assert info.id == result.image_id
            assert (info.labels[KEY_LABEL], info.labels[TARGET_LABEL]) == (result.key, target.name)
        done = docker.capture_in(result.image_id, "cat", ["/deps-random"])
        assert done.returncode == 0, done.stderr
        values.append(done.stdout)
    assert values[0] == values[1]  # one solve of the shared stage
    assert len(values[0]) == 32

    again = build_targets(resolver_for(docker, DirectoryStore(tmp_path / "store")), targets, quiet=True)
    assert [(r.outcome, r.image_id) for r in again] == [("daemon", r.image_id) for r in results]
