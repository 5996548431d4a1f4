"""Fixtures: a TestClient on the real database from DATABASE_URL, emptied before each test."""

import os

import psycopg
import pytest
from fastapi.testclient import TestClient
from notes_api.main import app


@pytest.fixture(scope="session")
def database_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if not url:
        pytest.fail("DATABASE_URL must point at a PostgreSQL database for these tests")
    return url


@pytest.fixture
def client(database_url):
    with TestClient(app) as test_client:  # runs the lifespan: creates the schema
        with psycopg.connect(database_url) as conn:
            conn.execute("TRUNCATE notes RESTART IDENTITY")
        yield test_client
