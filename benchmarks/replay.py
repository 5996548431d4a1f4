"""Replay a commit history on a cold CI runner: the seed's script, a plain build and stagecache.

    DOCKER_HOST=... .venv/bin/python benchmarks/replay.py [--commits N] [--quick] [--keep] [--allow-wipe]

The project: a small FastAPI + PostgreSQL service (SERVICE below: a Dockerfile with base, deps, prod
and dev stages, requirements.txt and requirements-dev.txt from PyPI, FROM python:3.11-slim) in a temp
git repository, and a history of commits (HISTORY below) applied one after another: app edits, test
edits, a README edit, a Dockerfile comment, a runtime and a dev dependency bump, a base bump.

Before each approach at each commit the engine is a **cold CI runner**: every container, volume and
network removed, every image removed but the base images (python:3.11-slim, postgres:15), BuildKit's
cache emptied (`docker builder prune -af`); only each approach's cache directory survives. So the
engine is wiped: without DOCKER_HOST this script starts and uses the bench lane (`scripts/ensure-engine
--lane bench`, a dockerd of its own), and it refuses any other engine without --allow-wipe.

Three approaches, interleaved per commit (the one that goes first rotates):

* seed: seed 2's CI script (SEED_SCRIPT): tag = sha1 of Dockerfile + requirements*.txt; `docker load`
  the archive from the cache dir when there is one, else build the dev target and `docker save` it
  there; tag it with the commit SHA; run the tests.
* plain: `docker buildx build --no-cache --target dev`, then the tests.
* stagecache: `stagecache -C REPO test api-tests --store DIR` (images through the cache, db up, pytest
  in the dev image, everything removed after).

seed and plain run the tests as `docker compose run --rm api-tests` (db started and healthy first)
then `docker compose down -v`, which is what `stagecache test` does. The tests print the digest of the
app/ and tests/ sources in the image; a run whose digest is not the commit's ran **stale code**.

Recorded per commit and approach: seconds (whole process), stale or not, hit or miss, the cache
directory's bytes after it. Goals (issue 13): stagecache total / seed total <= 0.5; stagecache on a
code-only commit / the seed's (stale) hit of the same commit <= 1.2; stagecache store bytes / seed
cache bytes <= 0.1; bytes a code-only commit adds to the store / bytes of the layers it changed <= 2.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import _common as c

POSTGRES_IMAGE = "postgres:15"
BASE_IMAGES = (c.BASE_IMAGE, POSTGRES_IMAGE)
SERVICE_NAME = "api-tests"
IMAGE_REPO = "replay-service"
APPROACHES = ("seed", "plain", "stagecache")
CODE_ONLY = ("code", "test")  # kinds whose commits change only app/ or tests/
BENCH_LANE_ROOT = "/lanes/bench/"  # part of the bench lane's data-root (scripts/ensure-engine)

SERVICE: dict[str, str] = {
    ".dockerignore": r""".git
**/__pycache__
README.md
docker-compose.yml
""",
    "Dockerfile": r"""# The replay benchmark's service (benchmarks/replay.py): one Dockerfile, two images.
#   --target prod : the API, runtime requirements only
#   --target dev  : the same plus requirements-dev.txt and the tests; runs pytest
# Requirements are installed before any source is copied, so editing app/ or tests/
# reuses the dependency layers.

FROM python:3.11-slim AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONPATH=/app
# The base revision: a base bump changes this step.
RUN echo "base revision 1" >/etc/service-base \
 && groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app


FROM base AS deps
COPY requirements.txt ./
RUN pip install -r requirements.txt


FROM deps AS prod
COPY app/ app/
USER app
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]


# The test tools in a stage of their own, so that a code change does not install them again.
FROM deps AS dev-deps
COPY requirements-dev.txt ./
RUN pip install -r requirements-dev.txt


FROM dev-deps AS dev
COPY pytest.ini ./
COPY app/ app/
COPY tests/ tests/
USER app
CMD ["pytest"]
""",
    "README.md": r"""# replay-service

A small notes API (FastAPI + PostgreSQL), the project whose commit history `benchmarks/replay.py`
replays on a cold CI runner. The tests run in the dev image against PostgreSQL:

    docker compose run --rm api-tests
""",
    "app/__init__.py": r'''"""The replay benchmark's notes API."""
''',
    "app/db.py": r'''"""PostgreSQL access: one connection per call, the table made on first use."""

from __future__ import annotations

import os

import psycopg

SCHEMA = "CREATE TABLE IF NOT EXISTS notes (id serial PRIMARY KEY, body text NOT NULL)"


def connect() -> psycopg.Connection:
    conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
    conn.execute(SCHEMA)
    return conn


def add_note(body: str) -> int:
    with connect() as conn:
        row = conn.execute("INSERT INTO notes (body) VALUES (%s) RETURNING id", (body,)).fetchone()
    assert row is not None
    return int(row[0])


def list_notes() -> list[dict[str, object]]:
    with connect() as conn:
        rows = conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall()
    return [{"id": r[0], "body": r[1]} for r in rows]
''',
    "app/main.py": r'''"""The API."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel

from app import db
from app.version import VERSION

app = FastAPI(title="notes")


class Note(BaseModel):
    body: str


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/version")
def version() -> dict[str, str]:
    return {"version": VERSION}


@app.post("/notes", status_code=201)
def create_note(note: Note) -> dict[str, object]:
    return {"id": db.add_note(note.body), "body": note.body}


@app.get("/notes")
def notes() -> list[dict[str, object]]:
    return db.list_notes()
''',
    "app/version.py": r"""# Each code commit of the replayed history sets this; the tests print it.
VERSION = "r00"
""",
    "docker-compose.yml": r"""# The tests run in the dev image against PostgreSQL.
services:
  api-tests:
    build:
      context: .
      dockerfile: Dockerfile
      target: dev
    image: replay-service:dev
    environment:
      DATABASE_URL: postgresql://app:app@db:5432/app
    depends_on:
      db:
        condition: service_healthy

  db:
    image: postgres:15
    environment:
      POSTGRES_USER: app
      POSTGRES_PASSWORD: app
      POSTGRES_DB: app
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -h 127.0.0.1 -U app -d app"]
      interval: 1s
      timeout: 3s
      retries: 30
""",
    "pytest.ini": r"""[pytest]
testpaths = tests
addopts = -ra -p no:cacheprovider
""",
    "requirements-dev.txt": r"""pytest==8.3.2
httpx==0.27.2
""",
    "requirements.txt": r"""fastapi==0.115.0
uvicorn==0.30.6
psycopg[binary]==3.2.3
""",
    "tests/__init__.py": r"""""",
    "tests/conftest.py": r'''"""Fixtures; header lines that say which code runs (for replay.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parent.parent


def source_digest() -> str:
    """sha256 over app/ and tests/ (*.py, by relative path): the same as the benchmark's."""
    sha = hashlib.sha256()
    files = sorted(p.relative_to(ROOT).as_posix() for d in ("app", "tests") for p in (ROOT / d).rglob("*.py"))
    for rel in files:
        sha.update(rel.encode() + b"\0" + (ROOT / rel).read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def pytest_report_header(config: pytest.Config) -> list[str]:
    from app.version import VERSION

    return [f"SERVICE_VERSION={VERSION}", f"SOURCE_DIGEST={source_digest()}"]


@pytest.fixture
def client() -> TestClient:
    from app.main import app

    return TestClient(app)
''',
    "tests/test_api.py": r"""from __future__ import annotations

from fastapi.testclient import TestClient

from app.version import VERSION


def test_health(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok"}


def test_version(client: TestClient) -> None:
    assert client.get("/version").json() == {"version": VERSION}


def test_notes_roundtrip(client: TestClient) -> None:
    made = client.post("/notes", json={"body": "hello"})
    assert made.status_code == 201
    assert {"id": made.json()["id"], "body": "hello"} in client.get("/notes").json()
""",
}

# The history: (kind, message, edits); an edit replaces the one occurrence of OLD in PATH by NEW. The
# first commit is SERVICE as it is. Code commits set VERSION, which the tests print.
Edit = tuple[str, str, str]
HISTORY: list[tuple[str, str, list[Edit]]] = [
    ("initial", "notes API: FastAPI + PostgreSQL, prod and dev images", []),
    (
        "code",
        "api: GET /notes/count",
        [
            ("app/version.py", 'VERSION = "r00"', 'VERSION = "r01"'),
            (
                "app/main.py",
                '@app.get("/notes")\n',
                '@app.get("/notes/count")\ndef count() -> dict[str, int]:\n'
                '    return {"count": len(db.list_notes())}\n\n\n@app.get("/notes")\n',
            ),
        ],
    ),
    (
        "test",
        "tests: the count follows the notes",
        [
            (
                "tests/test_api.py",
                "def test_notes_roundtrip(",
                "def test_count(client: TestClient) -> None:\n"
                '    before = client.get("/notes/count").json()["count"]\n'
                '    client.post("/notes", json={"body": "x"})\n'
                '    assert client.get("/notes/count").json()["count"] == before + 1\n'
                "\n\ndef test_notes_roundtrip(",
            ),
        ],
    ),
    (
        "code",
        "api: reject an empty note",
        [
            ("app/version.py", 'VERSION = "r01"', 'VERSION = "r03"'),
            (
                "app/main.py",
                "class Note(BaseModel):\n    body: str\n",
                "class Note(BaseModel):\n    body: str = Field(min_length=1)\n",
            ),
            ("app/main.py", "from pydantic import BaseModel\n", "from pydantic import BaseModel, Field\n"),
        ],
    ),
    (
        "docs",
        "README: how to run the API",
        [
            (
                "README.md",
                "    docker compose run --rm api-tests\n",
                "    docker compose run --rm api-tests\n\n"
                "The API itself: `docker build --target prod -t notes .`, "
                "then `docker run -p 8000:8000 notes`.\n",
            ),
        ],
    ),
    (
        "deps-runtime",
        "deps: uvicorn 0.31.0",
        [
            ("requirements.txt", "uvicorn==0.30.6", "uvicorn==0.31.0"),
        ],
    ),
    (
        "code",
        "api: /health says the version",
        [
            ("app/version.py", 'VERSION = "r03"', 'VERSION = "r06"'),
            ("app/main.py", 'return {"status": "ok"}', 'return {"status": "ok", "version": VERSION}'),
            ("tests/test_api.py", '== {"status": "ok"}', '== {"status": "ok", "version": VERSION}'),
        ],
    ),
    (
        "dockerfile-comment",
        "Dockerfile: say why requirements come first",
        [
            (
                "Dockerfile",
                "FROM base AS deps\n",
                "# Runtime requirements in a stage of their own: prod and dev share it.\nFROM base AS deps\n",
            ),
        ],
    ),
    (
        "deps-dev",
        "dev deps: pytest 8.3.3",
        [
            ("requirements-dev.txt", "pytest==8.3.2", "pytest==8.3.3"),
        ],
    ),
    (
        "code",
        "db: newest notes first",
        [
            ("app/version.py", 'VERSION = "r06"', 'VERSION = "r09"'),
            ("app/db.py", "ORDER BY id", "ORDER BY id DESC"),
        ],
    ),
    (
        "base",
        "base: revision 2 (locale)",
        [
            (
                "Dockerfile",
                'RUN echo "base revision 1" >/etc/service-base',
                'ENV LANG=C.UTF-8\nRUN echo "base revision 2" >/etc/service-base',
            ),
        ],
    ),
    (
        "code",
        "api: notes carry their length (and the test says so)",
        [
            ("app/version.py", 'VERSION = "r09"', 'VERSION = "r11"'),
            (
                "app/db.py",
                'return [{"id": r[0], "body": r[1]} for r in rows]',
                'return [{"id": r[0], "body": r[1], "length": len(r[1])} for r in rows]',
            ),
            (
                "tests/test_api.py",
                '    assert {"id": made.json()["id"], "body": "hello"} in client.get("/notes").json()\n',
                '    listed = {n["id"]: n for n in client.get("/notes").json()}\n'
                '    note_id = made.json()["id"]\n'
                '    assert listed[note_id] == {"id": note_id, "body": "hello", "length": 5}\n',
            ),
        ],
    ),
    (
        "test",
        "tests: an empty note is refused",
        [
            (
                "tests/test_api.py",
                "def test_notes_roundtrip(",
                "def test_empty_note(client: TestClient) -> None:\n"
                '    assert client.post("/notes", json={"body": ""}).status_code == 422\n'
                "\n\ndef test_notes_roundtrip(",
            ),
        ],
    ),
]

# Seed 2's CI script, for this project: a version tag from the files that affect the image, the image
# loaded from the cache dir when its archive is there, else built and saved there.
SEED_SCRIPT = r"""#!/usr/bin/env bash
set -euo pipefail
CACHE_DIR=$1 PROJECT=$2
IMAGE_NAME=replay-service
VERSION_TAG="$( sha1sum Dockerfile requirements*.txt | sha1sum | cut -d' ' -f1 )"
IMAGE_FULL_NAME="$IMAGE_NAME:$VERSION_TAG"
IMAGE_ARCHIVE="$CACHE_DIR/$IMAGE_NAME-$VERSION_TAG.tar"
mkdir -p "$CACHE_DIR"
if [[ -e "$IMAGE_ARCHIVE" ]]; then
    echo "seed: hit, loading $IMAGE_ARCHIVE"
    docker load -i "$IMAGE_ARCHIVE"
else
    echo "seed: miss, building $IMAGE_FULL_NAME"
    docker buildx build --target dev -t "$IMAGE_FULL_NAME" --load .
    docker save -o "$IMAGE_ARCHIVE" "$IMAGE_FULL_NAME"
fi
docker tag "$IMAGE_FULL_NAME" "$IMAGE_NAME:$(git rev-parse HEAD)"
docker tag "$IMAGE_FULL_NAME" "$IMAGE_NAME:dev"
exec bash "$(dirname "$0")/run-tests.sh" "$PROJECT"
"""

# The plain build: everything built every time.
PLAIN_SCRIPT = r"""#!/usr/bin/env bash
set -euo pipefail
PROJECT=$1
docker buildx build --no-cache --target dev -t replay-service:dev --load .
exec bash "$(dirname "$0")/run-tests.sh" "$PROJECT"
"""

# The tests in the dev image (tagged replay-service:dev, the compose file's image:) against PostgreSQL,
# as `stagecache test` runs them: dependencies up and healthy, the service's command, all removed after.
RUN_TESTS = r"""#!/usr/bin/env bash
set -uo pipefail
PROJECT=$1
echo "REPLAY_TESTS_START=$(date +%s.%N)"
docker compose -p "$PROJECT" run --rm api-tests
status=$?
docker compose -p "$PROJECT" down --volumes --remove-orphans >/dev/null 2>&1
exit $status
"""


@dataclass
class Run:
    """One approach at one commit."""

    commit: int
    kind: str
    approach: str
    seconds: float
    passed: bool
    outcome: str  # seed: hit/miss; plain: built; stagecache: its image outcome (built/store/daemon)
    stale: bool | None  # None: the tests printed no digest
    version: str | None
    cache_bytes: int
    store_added: int = 0
    changed_layer_bytes: int | None = None
    changed_layers: list[str] = field(default_factory=list)
    error: str = ""
    # seconds by phase: seed and plain "build" (or load) and "tests" (from compose run to down);
    # stagecache "build" and "tests" as its --json says, "other" the rest of the process
    detail: dict[str, float] = field(default_factory=dict)


# --- the project ----------------------------------------------------------------------------------------
def source_digest(root: Path) -> str:
    """What the tests print as SOURCE_DIGEST (tests/conftest.py in SERVICE computes the same)."""
    sha = hashlib.sha256()
    files = sorted(p.relative_to(root).as_posix() for d in ("app", "tests") for p in (root / d).rglob("*.py"))
    for rel in files:
        sha.update(rel.encode() + b"\0" + (root / rel).read_bytes() + b"\0")
    return sha.hexdigest()[:16]


def git(repo: Path, *argv: str) -> str:
    ident = [
        "-c",
        "user.name=replay",
        "-c",
        "user.email=replay@example.invalid",
        "-c",
        "commit.gpgsign=false",
    ]
    return c.run(["git", *ident, *argv], cwd=repo).stdout.strip()


def apply_commit(repo: Path, index: int) -> list[str]:
    """Make commit INDEX of HISTORY in REPO; returns the paths it changed."""
    kind, message, edits = HISTORY[index]
    if index == 0:
        for rel, text in SERVICE.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        git(repo, "init", "-q", "-b", "main")
    for rel, old, new in edits:
        path = repo / rel
        text = path.read_text()
        if text.count(old) != 1:
            raise SystemExit(f"HISTORY[{index}] ({message}): {old!r} is not once in {rel}")
        path.write_text(text.replace(old, new))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"{kind}: {message}")
    if index == 0:
        return sorted(SERVICE)
    return git(repo, "diff", "--name-only", "HEAD~1", "HEAD").splitlines()


def tree_bytes(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


# --- the engine -----------------------------------------------------------------------------------------
def choose_engine(allow_wipe: bool) -> str:
    """The bench lane (started when DOCKER_HOST is not set); refuse to wipe any other engine."""
    if not os.environ.get("DOCKER_HOST"):
        print("DOCKER_HOST not set: starting (or finding) the bench lane", flush=True)
        done = c.run(["bash", str(c.REPO / "scripts" / "ensure-engine"), "--lane", "bench"])
        line = done.stdout.strip().splitlines()[-1]
        os.environ["DOCKER_HOST"] = line.removeprefix("DOCKER_HOST=")
    host = os.environ["DOCKER_HOST"]
    root = c.run(["docker", "info", "--format", "{{.DockerRootDir}}"]).stdout.strip()
    if BENCH_LANE_ROOT not in root + "/" and not allow_wipe:
        raise SystemExit(
            f"{host} (data-root {root}) is not the bench lane, and this benchmark removes every image but "
            f"the base images from its engine: use the bench lane (unset DOCKER_HOST, or "
            f'export "$(scripts/ensure-engine --lane bench)"), or pass --allow-wipe'
        )
    for image in BASE_IMAGES:
        if c.image_id(image) is None:
            raise SystemExit(
                f"{image} is not in the engine on {host}: run scripts/ensure-engine --lane bench"
            )
    return host


def lines(argv: Sequence[str]) -> list[str]:
    return [s for s in c.run(argv, check=False).stdout.split() if s]


def cold_runner(base_ids: set[str]) -> None:
    """The engine as on a fresh CI runner: only the base images; no containers, volumes, build cache."""
    containers = lines(["docker", "ps", "-aq"])
    if containers:
        c.run(["docker", "rm", "--force", "--volumes", *containers], check=False)
    images = sorted(set(lines(["docker", "image", "ls", "-aq", "--no-trunc"])) - base_ids)
    if images:
        c.run(["docker", "image", "rm", "--force", *images], check=False)
    c.run(["docker", "volume", "prune", "--all", "--force"], check=False)
    c.run(["docker", "network", "prune", "--force"], check=False)
    c.run(["docker", "builder", "prune", "--all", "--force"])
    left = set(lines(["docker", "image", "ls", "-aq", "--no-trunc"]))
    if left != base_ids:
        raise c.CommandFailed(f"the engine is not cold: images {sorted(left ^ base_ids)}")


def changed_layers(image: str, changed: list[str]) -> tuple[int | None, list[str]]:
    """Bytes of the image's layers from the first COPY that takes a changed path up to the top."""
    out = c.run(["docker", "history", "--no-trunc", "--human=false", "--format", "{{.Size}}\t{{.CreatedBy}}",
                 image]).stdout  # fmt: skip
    rows = [(int(size), step) for size, _, step in (ln.partition("\t") for ln in out.splitlines()) if size]
    rows.reverse()  # oldest first
    for i, (_size, step) in enumerate(rows):
        words = step.removesuffix("# buildkit").split()
        if not words or words[0] != "COPY":
            continue
        sources = [w for w in words[1:-1] if not w.startswith("--")]
        if any(p == s.rstrip("/") or p.startswith(s.rstrip("/") + "/") for p in changed for s in sources):
            return sum(size for size, _ in rows[i:]), [step.strip() for _, step in rows[i:] if _ > 0]
    return None, []


# --- the approaches -------------------------------------------------------------------------------------
MARKER = re.compile(r"^(SERVICE_VERSION|SOURCE_DIGEST)=(\S+)", re.MULTILINE)


TESTS_START = re.compile(r"^REPLAY_TESTS_START=([0-9.]+)$", re.MULTILINE)


def execute(argv: Sequence[str], *, cwd: Path, env: dict[str, str] | None = None
            ) -> tuple[float, subprocess.CompletedProcess[str], dict[str, float]]:  # fmt: skip
    """Seconds, result, and for the scripts the seconds before and from the start of the tests."""
    start = time.perf_counter()
    done = subprocess.run(list(argv), cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, timeout=1800)  # fmt: skip
    seconds, end = time.perf_counter() - start, time.time()
    detail: dict[str, float] = {}
    if found := TESTS_START.search(done.stdout):
        detail["tests"] = round(end - float(found.group(1)), 3)
        detail["build"] = round(seconds - detail["tests"], 3)
    return seconds, done, detail


def run_approach(
    approach: str, index: int, repo: Path, tmp: Path, bid: str
) -> tuple[float, bool, str, str, dict[str, float]]:
    """Run one approach on the repo's HEAD: seconds, passed, outcome, all its output, seconds by phase."""
    project = f"{bid}-{approach}-{index}"
    ci = tmp / "ci"
    outcome = ""
    if approach == "seed":
        seconds, done, detail = execute(
            ["bash", str(ci / "seed.sh"), str(tmp / "seed-cache"), project], cwd=repo
        )
        outcome = "hit" if "seed: hit" in done.stdout else "miss"
    elif approach == "plain":
        seconds, done, detail = execute(["bash", str(ci / "plain.sh"), project], cwd=repo)
        outcome = "built"
    else:
        # a CI job: CI=true (and python_env's STAGECACHE_SAVE=always) writes its builds into the store
        env = {"STAGECACHE_CACHE_DIR": str(tmp / f"sc-cache-{index}"), "CI": "true", **c.python_env(tmp)}
        env.pop("STAGECACHE_STORE", None)
        argv = [
            *c.stagecache(),
            "-C",
            str(repo),
            "test",
            SERVICE_NAME,
            "--store",
            str(tmp / "sc-store"),
            "--json",
        ]
        seconds, done, detail = execute(argv, cwd=repo, env=env)
        try:
            res = json.loads(done.stdout)
            outcome = ",".join(str(img["outcome"]) for img in res.get("images", [])) or "?"
            detail["build"] = round(sum(float(img["seconds"]) for img in res.get("images", [])), 3)
            detail["tests"] = round(float(res["seconds"]), 3)
            detail["other"] = round(seconds - detail["build"] - detail["tests"], 3)
        except (ValueError, AttributeError, TypeError, KeyError):
            outcome = "?"
    return seconds, done.returncode == 0, outcome, done.stdout + "\n" + done.stderr, detail


# --- the report -----------------------------------------------------------------------------------------
def fmt_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


def summarize(runs: list[Run], n_commits: int) -> tuple[list[str], dict[str, Any], list[c.Check]]:
    by = {(r.commit, r.approach): r for r in runs}
    out: list[str] = []
    failed = {a: [r.commit for r in runs if r.approach == a and not r.passed] for a in APPROACHES}
    # Totals, medians and ratios count the commits where all three ran their tests to a pass.
    bad = {i for commits in failed.values() for i in commits}
    all_runs, runs = runs, [r for r in runs if r.commit not in bad]
    kinds = list(dict.fromkeys(r.kind for r in runs))
    total = {a: sum(r.seconds for r in runs if r.approach == a) for a in APPROACHES}
    final_bytes = {a: by[(n_commits - 1, a)].cache_bytes for a in APPROACHES}
    stale = {a: [r.commit for r in all_runs if r.approach == a and r.stale] for a in APPROACHES}
    per_kind = {k: {a: statistics.median([r.seconds for r in runs if r.kind == k and r.approach == a])
                    for a in APPROACHES} for k in kinds}  # fmt: skip
    out.append(f"{'':30}" + "".join(f"{a:>14}" for a in APPROACHES))
    out.append(f"{'total seconds':30}" + "".join(f"{total[a]:>14.1f}" for a in APPROACHES))
    for phase in ("build", "tests", "other"):
        sums = {a: sum(r.detail.get(phase, 0.0) for r in runs if r.approach == a) for a in APPROACHES}
        if any(sums.values()):
            label = f"  of which {phase}" + (" (or load)" if phase == "build" else "")
            out.append(f"{label:30}" + "".join(f"{sums[a]:>14.1f}" for a in APPROACHES))
    for k in kinds:
        n = sum(1 for r in runs if r.kind == k and r.approach == "seed")
        label = f"median {k} ({n})"
        out.append(f"{label:30}" + "".join(f"{per_kind[k][a]:>14.1f}" for a in APPROACHES))
    out.append(f"{'stale runs':30}" + "".join(f"{len(stale[a]):>14}" for a in APPROACHES))
    out.append(f"{'failed runs':30}" + "".join(f"{len(failed[a]):>14}" for a in APPROACHES))
    out.append(
        f"{'cache bytes at the end':30}" + "".join(f"{fmt_bytes(final_bytes[a]):>14}" for a in APPROACHES)
    )
    sc_tests = sum(r.detail.get("tests", 0.0) for r in runs if r.approach == "stagecache")
    if total["seed"] > 0 and sc_tests:
        out.append(f"floor: stagecache's tests phase alone / seed total = {sc_tests / total['seed']:.2f}x "
                   f"(the total ratio with every build and load free)")  # fmt: skip
    if bad:
        out.append(f"left out of totals, medians and ratios: commits {', '.join(map(str, sorted(bad)))}")
    for a in APPROACHES:
        if stale[a]:
            out.append(f"stale: {a} at commits {', '.join(map(str, stale[a]))}")
        if failed[a]:
            out.append(f"FAILED: {a} at commits {', '.join(map(str, failed[a]))}")

    code_commits = sorted({r.commit for r in runs if r.kind in CODE_ONLY})
    vs_hit = [by[(i, "stagecache")].seconds / by[(i, "seed")].seconds for i in code_commits
              if by[(i, "seed")].outcome == "hit"]  # fmt: skip
    growth = [by[(i, "stagecache")].store_added / (by[(i, "stagecache")].changed_layer_bytes or 1)
              for i in code_commits if by[(i, "stagecache")].changed_layer_bytes is not None]  # fmt: skip
    checks: list[c.Check] = []
    if total["seed"] > 0:
        checks.append(
            c.Check("replay total, stagecache / seed", total["stagecache"] / total["seed"], 0.5, "x")
        )
    if vs_hit:
        checks.append(c.Check("code-only commit, stagecache / seed's stale hit (median)",
                              statistics.median(vs_hit), 1.2, "x"))  # fmt: skip
    if final_bytes["seed"] > 0:
        checks.append(c.Check("cache bytes at the end, stagecache store / seed cache dir",
                              final_bytes["stagecache"] / final_bytes["seed"], 0.1, "x"))  # fmt: skip
    if growth:
        checks.append(c.Check("code-only commit, store bytes added / bytes of the layers it changed (median)",
                              statistics.median(growth), 2.0, "x"))  # fmt: skip
    summary = {
        "total_seconds": total,
        "median_seconds_by_kind": per_kind,
        "stale_commits": stale,
        "failed_commits": failed,
        "commits_left_out": sorted(bad),
        "cache_bytes_at_end": final_bytes,
        "code_only_stagecache_over_seed_hit": vs_hit,
        "code_only_store_added_over_changed_layers": growth,
        "floor_stagecache_tests_over_seed_total": sc_tests / total["seed"] if total["seed"] > 0 else None,
    }
    return out, summary, checks


def commit_line(index: int, kind: str, message: str, rs: dict[str, Run]) -> str:
    cells = []
    for a in APPROACHES:
        r = rs[a]
        flag = "STALE" if r.stale else ("?" if r.stale is None else "ok")
        if not r.passed:
            flag = "FAILED"
        cells.append(f"{a} {r.seconds:6.1f}s {r.outcome:>6} {flag:6} {fmt_bytes(r.cache_bytes):>9}")
    return f"{index:3} {kind:18} " + " | ".join(cells) + f"  ({message})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--commits", type=int, help=f"replay the first N commits (default all {len(HISTORY)})"
    )
    parser.add_argument("--quick", action="store_true", help="the first 5 commits (unless --commits)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (repo, caches) and say where")
    parser.add_argument(
        "--allow-wipe",
        action="store_true",
        help="wipe an engine that is not the bench lane (all its images but the base ones)",
    )
    args = parser.parse_args()
    n = args.commits or (5 if args.quick else len(HISTORY))
    if not 1 <= n <= len(HISTORY):
        parser.error(f"--commits must be 1 to {len(HISTORY)}")
    host = choose_engine(args.allow_wipe)
    info = c.machine()
    print(f"replay: {c.describe(info)}; engine {host}")
    base_ids = {i for i in (c.image_id(b) for b in BASE_IMAGES) if i}
    bid = c.bench_id()
    runs: list[Run] = []
    started = time.monotonic()
    where = contextlib.nullcontext(Path(tempfile.mkdtemp(prefix=f"{bid}-"))) if args.keep else c.temp_dir(bid)
    with where as tmp:
        repo, ci = tmp / "repo", tmp / "ci"
        repo.mkdir()
        ci.mkdir()
        for name, text in (("seed.sh", SEED_SCRIPT), ("plain.sh", PLAIN_SCRIPT), ("run-tests.sh", RUN_TESTS)):
            (ci / name).write_text(text)
        caches = {"seed": tmp / "seed-cache", "plain": None, "stagecache": tmp / "sc-store"}
        try:
            for index in range(n):
                kind, message, _ = HISTORY[index]
                changed = apply_commit(repo, index)
                expected = source_digest(repo)
                results: dict[str, Run] = {}
                for approach in APPROACHES[index % 3 :] + APPROACHES[: index % 3]:
                    cache = caches[approach]
                    before = tree_bytes(cache) if cache else 0
                    cold_runner(base_ids)
                    seconds, passed, outcome, output, detail = run_approach(approach, index, repo, tmp, bid)
                    marks = dict(MARKER.findall(output))
                    digest = marks.get("SOURCE_DIGEST")
                    after = tree_bytes(cache) if cache else 0
                    run = Run(index, kind, approach, seconds, passed, outcome,
                              None if digest is None else digest != expected, marks.get("SERVICE_VERSION"),
                              after, store_added=after - before, detail=detail)  # fmt: skip
                    if not passed:
                        run.error = "\n".join(output.strip().splitlines()[-25:])
                    if approach == "stagecache" and kind in CODE_ONLY and passed:
                        run.changed_layer_bytes, run.changed_layers = changed_layers(
                            f"{IMAGE_REPO}:dev", changed
                        )
                    results[approach] = run
                    runs.append(run)
                print(commit_line(index, kind, message, results), flush=True)
                for r in results.values():
                    if r.error:
                        print(
                            f"    {r.approach} failed:\n"
                            + "\n".join(f"      {ln}" for ln in r.error.splitlines())
                        )
        finally:
            cold_runner(base_ids)
    elapsed = time.monotonic() - started
    if args.keep:
        print(f"kept: {tmp} (the repo, seed-cache/, sc-store/)")
    table, summary, checks = summarize(runs, n)
    print(f"\n{n} commits replayed in {elapsed / 60:.1f} min (each approach on a cold runner at each commit)")
    for line in table:
        print(line)
    for r in runs:
        if r.approach == "stagecache" and r.changed_layer_bytes is not None:
            print(f"commit {r.commit} ({r.kind}): store +{fmt_bytes(r.store_added)} for changed layers of "
                  f"{fmt_bytes(r.changed_layer_bytes)} ({'; '.join(r.changed_layers)})")  # fmt: skip
    data = c.result(
        "replay", argparse.Namespace(repeat=1), info, checks,
        engine=host, commits=n, elapsed_seconds=round(elapsed, 1),
        history=[{"kind": k, "message": m} for k, m, _ in HISTORY[:n]],
        summary=summary, runs=[asdict(r) for r in runs],
    )  # fmt: skip
    c.report("replay", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
