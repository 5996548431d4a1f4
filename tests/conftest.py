"""Shared fixtures. Tests that use ``engine`` are marked ``docker`` automatically."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from stagecache.engine.docker import Docker
from stagecache.errors import EngineError
from stagecache.refs import LABEL_PREFIX

TEST_LABEL = f"{LABEL_PREFIX}.test"

# Builds are written into the store in CI only (Settings.saves); the suite asserts on stores written
# by every build, on a developer's machine as in CI. tests/unit/test_save_policy.py tests the rule.
os.environ["STAGECACHE_SAVE"] = "always"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "engine" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def engine() -> Docker:
    """The real Docker engine; missing, it fails in CI and skips elsewhere."""
    docker = Docker.local()
    try:
        docker.engine()
    except EngineError as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI needs a Docker engine: {exc}")
        pytest.skip(f"no Docker engine: {exc}")
    return docker


@pytest.fixture
def run_id() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
def cleanup_images(engine: Docker) -> Iterator[list[str]]:
    """Append image references to this list; they are removed after the test."""
    refs: list[str] = []
    yield refs
    engine.remove_image(*refs, force=True)


@pytest.fixture
def images(engine: Docker, run_id: str) -> Iterator[None]:
    """Every image of the repository ``stagecache-test-<run_id>`` is removed after the test."""
    yield
    done = engine.runner(
        ["docker", "images", "--quiet", "--filter", f"reference=stagecache-test-{run_id}"], check=False
    )
    if ids := sorted(set(done.stdout.split())):
        engine.remove_image(*ids, force=True)
