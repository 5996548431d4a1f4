"""BuildKit conformance: the key against real builds, instruction by instruction and flag by flag.

Every case of ``tests/conformance/cases.py`` is a small project built for real (``--no-cache``) before
and after one change; the two images (files and config) are compared with the two keys. A false hit
(same key, different image) fails; a false miss is counted; a refusal of a project docker builds
fails unless the case says why it is justified; a project the engine rejects (an older BuildKit) is
skipped with the engine's line. All cases are keyed and built once per module, one build at a time
(concurrent builds can share a step), and read back with one ``docker save`` (``harness.Run``); each
test then reads its own result.

``STAGECACHE_CONFORMANCE_REPORT=FILE`` writes every result as JSON.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker

from ..conformance import harness as h
from ..conformance.cases import CASES

pytestmark = [pytest.mark.docker, pytest.mark.slow]


class FalseHit(AssertionError):
    """Same key, different image."""


class FalseRefusal(AssertionError):
    """The key refused a project docker builds, and the case gives no reason why that is right."""


def _param(case: h.Case) -> object:
    # A known false hit may only fail as one (`raises`): if it turns into something else, that shows.
    marks = []
    if case.false_hit:
        marks.append(pytest.mark.xfail(strict=True, raises=FalseHit, reason=case.false_hit))
    if case.false_refusal:
        marks.append(pytest.mark.xfail(strict=True, raises=FalseRefusal, reason=case.false_refusal))
    return pytest.param(case, id=case.id, marks=marks)


@pytest.fixture(scope="module")
def results(engine: Docker, tmp_path_factory: pytest.TempPathFactory) -> dict[str, h.Result]:
    started = time.monotonic()
    with h.Run(engine, tmp_path_factory.mktemp("conformance")) as run:
        done = run.execute(CASES)
    seconds = time.monotonic() - started
    by_id = {r.case.id: r for r in done}
    report = os.environ.get("STAGECACHE_CONFORMANCE_REPORT")
    if report:
        Path(report).write_text(
            json.dumps(
                {
                    "engine": h.engine_description(),
                    "cases": len(done),
                    "builds": run.builds,
                    "seconds": round(seconds, 1),
                    "timings": {k: round(v, 1) for k, v in run.timings.items()},
                    "verdicts": h.tally(done),
                    "results": [r.as_json() for r in done],
                },
                indent=2,
            )
            + "\n"
        )
    return by_id


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)), sorted({i for i in ids if ids.count(i) > 1})


@pytest.mark.parametrize("case", [_param(c) for c in CASES])
def test_conformance(
    case: h.Case, results: dict[str, h.Result], record_property: Callable[[str, object], None]
) -> None:
    record_property("covers", case.covers)
    r = results[case.id]
    record_property("verdict", r.verdict)
    where = f"{case.covers}: {case.change.what}"
    assert r.verdict != h.CRASHED, f"{where}: the key raised {r.detail}"
    if r.verdict == h.REJECTED:
        if case.needs:
            pytest.skip(f"the engine rejects {case.needs}: {r.detail}")
        pytest.fail(f"{where}: the engine rejected a case that needs no newer BuildKit: {r.detail}")
    if r.verdict == h.FALSE_REFUSAL:
        message = r.detail.split(": ", 1)[-1]
        assert r.detail.startswith("exit 2: "), f"{where}: a refusal must exit 2: {r.detail}"
        assert "\n" not in message, f"{where}: a refusal must be one line: {r.detail!r}"
        if not case.refusal:
            raise FalseRefusal(f"{where}: FALSE REFUSAL (docker builds it): {r.detail}")
        return
    if case.needs and case.image == "changes" and r.image_changed is False:
        pytest.skip(f"the engine ignores {case.needs}: the image does not change")
    if r.verdict == h.FALSE_HIT:
        raise FalseHit(f"{where}: FALSE HIT: same key, different image: {r.detail}")
    if case.uncacheable:
        assert r.verdict == h.UNCACHEABLE, f"{where}: a remote source must make the target uncacheable"
    if case.image is not None:
        changed = "changes" if r.image_changed else "same"
        assert changed == case.image, (
            f"{where}: the case expects the image to be {case.image!r}, it is {changed!r}"
            + (f" ({r.detail})" if r.detail else "")
        )
