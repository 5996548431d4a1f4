"""The key changes whenever the built image's files change (no false hits), checked against BuildKit."""

from __future__ import annotations

import pytest

from stagecache.engine.docker import Docker

from .differential import run


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_no_false_hits(engine: Docker, seed: int, run_id: str) -> None:
    tally = run(engine, seed=seed, mutations=8, repository=f"stagecache-test-{run_id}")
    assert tally.steps == 8
    assert tally.false_hits == []
    # the sample must exercise both sides, or it proves nothing
    assert tally.content_changes > 0
    assert tally.key_changes < tally.steps or tally.content_changes == tally.steps
