"""Database access: one connection per request, schema created at startup."""

import os
from collections.abc import Iterator

import psycopg
from psycopg.rows import dict_row

SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id         BIGSERIAL PRIMARY KEY,
    title      TEXT        NOT NULL,
    body       TEXT        NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        raise RuntimeError("DATABASE_URL is not set")
    return url


def connect(connect_timeout: int = 5) -> psycopg.Connection:
    return psycopg.connect(database_url(), row_factory=dict_row, connect_timeout=connect_timeout)


def create_schema() -> None:
    with connect() as conn:
        conn.execute(SCHEMA)


def get_conn() -> Iterator[psycopg.Connection]:
    """FastAPI dependency: one connection per request.

    Endpoints commit explicitly before they answer; anything left uncommitted is
    rolled back when the connection closes (psycopg rolls back on an exception).
    """
    with connect() as conn:
        yield conn
