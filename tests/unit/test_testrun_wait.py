"""Waiting for a test run's dependencies, driven by `docker compose ps` answers recorded from a real
engine (tests/fixtures/engine): starting then healthy, a dependency that exits, one that never gets
healthy, and a `compose up` that fails."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.engine.base import Compose
from stagecache.progress import Silent
from stagecache.testwait import Dependencies, ServicesNotReady
from tests.fakes import FakeEngine

PROJECT = Compose((Path("/project/compose.yaml"),), Path("/project"), "sc-test")


def waiting(engine: FakeEngine) -> Dependencies:
    return Dependencies(engine, Silent())


def test_waits_while_starting_and_returns_once_healthy() -> None:
    engine = FakeEngine()
    engine.ps_answers = ["compose-ps-starting.json", "compose-ps-starting.json", "compose-ps-healthy.json"]
    waiting(engine).up(PROJECT, ["db"], wait_timeout=30)
    assert engine.calls == ["compose up --detach --no-build db"]
    assert engine.ps_answers == ["compose-ps-healthy.json"]  # both "starting" answers were polled


def test_a_dependency_that_exits_fails_at_once_with_its_state() -> None:
    engine = FakeEngine()
    engine.ps_answers = ["compose-ps-exited.json"]
    with pytest.raises(ServicesNotReady, match=r"broken exited with code 3"):
        waiting(engine).up(PROJECT, ["db", "broken"], wait_timeout=300)


def test_one_that_never_gets_healthy_times_out_with_its_last_check() -> None:
    engine = FakeEngine()
    engine.ps_answers = ["compose-ps-starting.json"]
    with pytest.raises(ServicesNotReady, match=r"not ready after 0s: db is starting \(exit 0: "):
        waiting(engine).up(PROJECT, ["db"], wait_timeout=0)


def test_a_failed_up_says_what_compose_said() -> None:
    engine = FakeEngine()
    engine.ps_answers = ["compose-ps-healthy.json"]
    engine.up_error = (
        "Error response from daemon: driver failed: Bind for 0.0.0.0:5432 failed: port is already allocated\n"
    )
    with pytest.raises(ServicesNotReady, match=r"could not start db: .*port is already allocated"):
        waiting(engine).up(PROJECT, ["db"], wait_timeout=30)


def test_a_dependency_not_created_is_named() -> None:
    engine = FakeEngine()
    engine.ps_answers = ["compose-ps-healthy.json"]
    with pytest.raises(ServicesNotReady, match="cache is not created"):
        waiting(engine).up(PROJECT, ["db", "cache"], wait_timeout=0)
