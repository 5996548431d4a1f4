"""--results DIR: made for the container's user when absent; an existing directory keeps its mode."""

from __future__ import annotations

import stat
from pathlib import Path

from stagecache.testrun import _prepare_results


def test_an_existing_results_directory_keeps_its_mode(tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir(mode=0o750)
    results.chmod(0o750)
    (results / "junit-api.xml").write_text("<old/>")
    _prepare_results(results, "api")
    assert stat.S_IMODE(results.stat().st_mode) == 0o750  # it was made 0777 before
    assert not (results / "junit-api.xml").exists()  # an old report is never passed off as new


def test_a_new_results_directory_is_writable_by_the_containers_user(tmp_path: Path) -> None:
    results = tmp_path / "new" / "results"
    _prepare_results(results, "api")
    assert stat.S_IMODE(results.stat().st_mode) == 0o777
