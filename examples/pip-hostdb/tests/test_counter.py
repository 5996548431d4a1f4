"""The visit counter against a real PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest
from app import counter

PROJECT_DIR = Path(__file__).resolve().parent.parent


def test_each_test_works_in_its_own_empty_schema(conn):
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    assert schema.startswith("test_")
    assert conn.execute("SELECT count(*) FROM visits").fetchone()[0] == 0


def test_create_schema_is_idempotent_and_keeps_rows(conn):
    counter.hit(conn, "home")
    counter.create_schema(conn)
    counter.create_schema(conn)
    assert counter.get(conn, "home") == 1
    tables = conn.execute(
        "SELECT count(*) FROM information_schema.tables"
        " WHERE table_schema = current_schema() AND table_name = 'visits'"
    ).fetchone()[0]
    assert tables == 1


def test_first_hit_is_one_then_counts_up(conn):
    assert [counter.hit(conn, "home") for _ in range(3)] == [1, 2, 3]
    assert counter.get(conn, "home") == 3


def test_hit_by_adds_that_many(conn):
    assert counter.hit(conn, "api", by=5) == 5
    assert counter.hit(conn, "api", by=2) == 7


def test_unknown_counter_is_zero_and_counters_are_independent(conn):
    assert counter.get(conn, "nowhere") == 0
    assert counter.last_visit(conn, "nowhere") is None
    counter.hit(conn, "a")
    counter.hit(conn, "b", by=10)
    assert (counter.get(conn, "a"), counter.get(conn, "b")) == (1, 10)
    # Names are exact: no case folding, no trimming.
    assert counter.get(conn, "A") == 0
    assert counter.get(conn, " a") == 0


@pytest.mark.parametrize(
    ("name", "by"),
    [("", 1), ("   ", 1), ("x" * 201, 1), (None, 1), ("ok", 0), ("ok", -3), ("ok", True), ("ok", 1.5)],
)
def test_invalid_arguments_are_rejected_and_change_nothing(conn, name, by):
    with pytest.raises(ValueError):
        counter.hit(conn, name, by=by)
    assert conn.execute("SELECT count(*) FROM visits").fetchone()[0] == 0


def test_database_rejects_impossible_rows_too(conn):
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO visits (name, count) VALUES ('zero', 0)")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO visits (name, count) VALUES ('', 1)")


def test_top_orders_by_count_then_name_and_limits(conn):
    for name, by in [("b", 2), ("a", 2), ("c", 9), ("d", 1)]:
        counter.hit(conn, name, by=by)
    assert counter.top(conn) == [("c", 9), ("a", 2), ("b", 2), ("d", 1)]
    assert counter.top(conn, limit=2) == [("c", 9), ("a", 2)]
    with pytest.raises(ValueError):
        counter.top(conn, limit=0)


def test_reset_forgets_one_counter(conn):
    counter.hit(conn, "gone", by=4)
    counter.hit(conn, "kept")
    assert counter.reset(conn, "gone") is True
    assert counter.reset(conn, "gone") is False
    assert counter.get(conn, "gone") == 0
    assert counter.hit(conn, "gone") == 1
    assert counter.get(conn, "kept") == 1


def test_last_visit_moves_forward(conn):
    counter.hit(conn, "page")
    first = counter.last_visit(conn, "page")
    conn.execute("SELECT pg_sleep(0.01)")
    counter.hit(conn, "page")
    second = counter.last_visit(conn, "page")
    assert first is not None and first.tzinfo is not None
    assert second > first


def test_concurrent_hits_from_many_connections_are_all_counted(conn, schema_url):
    workers, hits_each = 4, 25
    errors: list[BaseException] = []
    start = threading.Barrier(workers)

    def visitor() -> None:
        try:
            with counter.connect(schema_url) as own:
                start.wait(timeout=10)
                for _ in range(hits_each):
                    counter.hit(own, "busy")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=visitor) for _ in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert counter.get(conn, "busy") == workers * hits_each


def test_database_url_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:p@db:5433/x")
    assert counter.database_url() == "postgresql://u:p@db:5433/x"
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(RuntimeError, match="DATABASE_URL"):
        counter.database_url()


def test_command_line_round_trip(schema_url):
    env = {**os.environ, "DATABASE_URL": schema_url}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app", *args],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("hit", "cli").stdout == "1\n"
    assert run("hit", "cli", "4").stdout == "5\n"
    assert run("get", "cli").stdout == "5\n"
    assert run("top").stdout == "5\tcli\n"
    assert run("reset", "cli").stdout == "reset\n"
    bad = run("hit", "cli", "0")
    assert bad.returncode == 2 and "positive" in bad.stderr
