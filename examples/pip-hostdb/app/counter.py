"""Visit counters in PostgreSQL, through psycopg 3.

Each counter is a row of the ``visits`` table: a name, how many visits it has had, and when the
last one happened. Increments are single ``INSERT ... ON CONFLICT DO UPDATE`` statements, so
concurrent visitors never lose a count. The database comes from ``DATABASE_URL``.
"""

from __future__ import annotations

import os
from datetime import datetime

import psycopg

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS visits (
    name       text        PRIMARY KEY CHECK (name <> '' AND length(name) <= 200),
    count      bigint      NOT NULL CHECK (count > 0),
    last_visit timestamptz NOT NULL DEFAULT now()
)
"""


def database_url() -> str:
    """The PostgreSQL URL from the ``DATABASE_URL`` environment variable."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        raise RuntimeError("DATABASE_URL is not set: point it at a PostgreSQL database")
    return url


def connect(url: str | None = None) -> psycopg.Connection:
    """An autocommit connection to ``url`` (default: ``DATABASE_URL``)."""
    return psycopg.connect(url or database_url(), autocommit=True)


def create_schema(conn: psycopg.Connection) -> None:
    """Create the ``visits`` table if it does not exist yet (safe to call any number of times)."""
    conn.execute(SCHEMA_SQL)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a counter name must be a non-empty string")
    if len(name) > 200:
        raise ValueError("a counter name is at most 200 characters")
    return name


def hit(conn: psycopg.Connection, name: str, by: int = 1) -> int:
    """Count ``by`` visits to ``name`` and return its new total."""
    _check_name(name)
    if isinstance(by, bool) or not isinstance(by, int) or by < 1:
        raise ValueError("'by' must be a positive integer")
    row = conn.execute(
        """
        INSERT INTO visits (name, count) VALUES (%s, %s)
        ON CONFLICT (name) DO UPDATE
            SET count = visits.count + EXCLUDED.count, last_visit = now()
        RETURNING count
        """,
        (name, by),
    ).fetchone()
    return row[0]


def get(conn: psycopg.Connection, name: str) -> int:
    """How many visits ``name`` has had (0 when it has none)."""
    _check_name(name)
    row = conn.execute("SELECT count FROM visits WHERE name = %s", (name,)).fetchone()
    return row[0] if row else 0


def last_visit(conn: psycopg.Connection, name: str) -> datetime | None:
    """When ``name`` was last visited, or None."""
    _check_name(name)
    row = conn.execute("SELECT last_visit FROM visits WHERE name = %s", (name,)).fetchone()
    return row[0] if row else None


def top(conn: psycopg.Connection, limit: int = 10) -> list[tuple[str, int]]:
    """The ``limit`` most visited names, most visits first (ties by name)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError("'limit' must be a positive integer")
    rows = conn.execute(
        "SELECT name, count FROM visits ORDER BY count DESC, name ASC LIMIT %s", (limit,)
    ).fetchall()
    return [(name, count) for name, count in rows]


def reset(conn: psycopg.Connection, name: str) -> bool:
    """Forget ``name``'s visits; True when it had any."""
    _check_name(name)
    return conn.execute("DELETE FROM visits WHERE name = %s", (name,)).rowcount > 0
