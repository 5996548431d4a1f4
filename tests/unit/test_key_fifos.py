"""A FIFO a target copies makes it uncacheable: BuildKit 0.8 (Docker 20.10) drops a FIFO from the
image, newer BuildKit (Docker 26) copies it, so the image depends on the engine, not on the key."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stagecache.key.inputs import collect
from stagecache.key.spec import TargetSpec
from tests.fakes import Images


def _uncacheable(root: Path, dockerfile: str, ignore: str = "") -> list[str]:
    (root / "Dockerfile").write_text(dockerfile)
    if ignore:
        (root / ".dockerignore").write_text(ignore)
    spec = TargetSpec("t", root, root / "Dockerfile")
    return collect(spec, images=Images(), platform="linux/amd64").uncacheable


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("print()\n")
    (tmp_path / "pipes").mkdir()
    (tmp_path / "pipes" / "note.txt").write_text("n\n")
    os.mkfifo(tmp_path / "pipes" / "pipe")
    return tmp_path


@pytest.mark.parametrize(
    "dockerfile",
    [
        "FROM python:3.11-slim\nCOPY . /app/\n",  # the whole context
        "FROM python:3.11-slim\nCOPY pipes /p/\n",  # its directory
        "FROM python:3.11-slim\nCOPY pipes/* /p/\n",  # a wildcard beside it
        "FROM python:3.11-slim\nCOPY pipes/*e /p/\n",  # a wildcard that matches the FIFO alone (review)
        "FROM python:3.11-slim\nCOPY pipes/pipe /p/\n",  # its name
    ],
)
def test_a_fifo_the_target_may_copy_makes_it_uncacheable(context: Path, dockerfile: str) -> None:
    (reason,) = _uncacheable(context, dockerfile)
    assert reason.startswith("pipes/pipe: a FIFO the target copies")


def test_a_fifo_the_target_does_not_copy_changes_nothing(context: Path) -> None:
    assert _uncacheable(context, "FROM python:3.11-slim\nCOPY app /app/\n") == []
    assert _uncacheable(context, "FROM python:3.11-slim\nCOPY pipes/note.txt /p/\n") == []


def test_an_excluded_fifo_changes_nothing(context: Path) -> None:
    assert _uncacheable(context, "FROM python:3.11-slim\nCOPY . /app/\n", ignore="pipes/pipe\n") == []
