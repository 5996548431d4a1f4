"""The plumbing: BuildKit builds one target of a multi-stage Dockerfile; the PostgreSQL image answers."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from stagecache.engine.docker import Docker


def test_buildkit_builds_only_the_target(engine: Docker, tmp_path: Path, run_id: str) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim AS one\nRUN echo one > /one.txt\n"
        "FROM python:3.11-slim AS two\nRUN echo two > /two.txt\nLABEL org.stagecache.test=1\n"
    )
    tag = f"stagecache-test-{run_id}:two"
    iid = tmp_path / "iid"
    try:
        done = engine.build(context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="two", tags=[tag],
                            build_args={}, labels={}, quiet=True, iidfile=iid)  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "one.txt" not in done.stderr  # BuildKit never ran the other stage
        run = engine.runner(
            ["docker", "run", "--rm", tag, "sh", "-c", "cat /two.txt; ls /one.txt"], check=False
        )
        assert run.stdout.strip() == "two"
        assert run.returncode != 0  # /one.txt is not in the image
        info = engine.image_inspect(tag)
        assert info is not None
        assert info.id == iid.read_text().strip()
    finally:
        engine.remove_image(tag, force=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def postgres(engine: Docker, run_id: str) -> Iterator[str]:
    port = free_port()
    name = f"stagecache-test-pg-{run_id}"
    env = ["-e", "POSTGRES_PASSWORD=pw", "-e", "POSTGRES_USER=app", "-e", "POSTGRES_DB=appdb"]
    options = ["--name", name, "--label", "org.stagecache.test=1", "-p", f"127.0.0.1:{port}:5432", *env]
    engine.runner(["docker", "run", "-d", "--rm", *options, "postgres:15", "postgres", "-c", "fsync=off"])
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = engine.runner(
                ["docker", "exec", name, "pg_isready", "-h", "127.0.0.1", "-U", "app"], check=False
            )
            if ready.returncode == 0:
                break
            if time.monotonic() > deadline:
                logs = engine.runner(["docker", "logs", name], check=False)
                pytest.fail(f"postgres never became ready: {ready.stdout} {logs.stderr[-500:]}")
            time.sleep(0.2)
        yield f"postgresql://app:pw@127.0.0.1:{port}/appdb"
    finally:
        engine.runner(["docker", "rm", "-f", name], check=False)


def test_postgres_image_answers_a_real_client(engine: Docker, run_id: str) -> None:
    with postgres(engine, run_id) as url:
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = psycopg.connect(url, connect_timeout=3)
                break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        with conn:
            assert conn.execute("SHOW server_encoding").fetchone() == ("UTF8",)
            conn.execute("CREATE TABLE t (name text)")
            conn.execute("INSERT INTO t VALUES ('ünïcode')")
            assert conn.execute("SELECT name FROM t").fetchone() == ("ünïcode",)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url.replace(":pw@", ":wrong@"), connect_timeout=3).close()
