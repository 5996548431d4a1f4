"""Fixtures: the real PostgreSQL database from DATABASE_URL, one fresh schema per test.

Each test gets a schema of its own (``test_<random>``), made the ``search_path`` of every connection
opened with the ``schema_url`` fixture's conninfo, and dropped when the test ends: tests see none of
each other's rows, may open several connections, and leave nothing behind.
"""

from __future__ import annotations

import os
import uuid

import psycopg
import pytest
from app import counter
from psycopg import conninfo, sql


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        pytest.fail(
            "DATABASE_URL must point at a PostgreSQL database for these tests "
            "(on the host: scripts/host-postgres prints one)"
        )
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as exc:
        pytest.fail(f"cannot connect to DATABASE_URL: {exc}")
    return url


@pytest.fixture
def schema_url(database_url: str):
    """A conninfo whose connections work in a fresh schema of this test's own."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
    try:
        yield conninfo.make_conninfo(database_url, options=f"-c search_path={name}")
    finally:
        with psycopg.connect(database_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
def conn(schema_url: str):
    """A connection in the test's schema, with the ``visits`` table created."""
    with counter.connect(schema_url) as connection:
        counter.create_schema(connection)
        yield connection
