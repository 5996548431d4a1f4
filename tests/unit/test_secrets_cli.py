"""Everything the commands print (`-v`, `--json`, `--explain`, `--why`) and every file they leave in the
store and the cache directory, grepped for a secret build arg's value and a BuildKit secret's source;
through `main()` with the fake engine (tests/integration/test_secrets.py does it on the engine)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from stagecache import redaction
from stagecache.cli import main
from tests.fakes import FakeEngine

TOKEN = "tok-ab12cd34-value"
DOCKERFILE = """\
FROM python:3.11-slim AS app
ARG API_TOKEN
RUN test -n "$API_TOKEN"
RUN --mount=type=secret,id=pip_token test -s /run/secrets/pip_token
COPY app.py /app/
"""


class Engine(FakeEngine):
    """Compose's answer as `docker compose config` resolves `args: {API_TOKEN: ${API_TOKEN}}`."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root
        self.token = TOKEN

    def compose_config(self, directory: Path, files: Any = (), **options: Any) -> dict[str, Any]:
        build = {
            "context": str(self.root),
            "dockerfile": "Dockerfile",
            "args": {"API_TOKEN": self.token, "LEVEL": "2"},
            "secrets": [{"source": "pip_token"}],
        }
        return {
            "name": "svc",
            "services": {"app": {"build": build, "image": "svc-app:latest"}},
            "secrets": {"pip_token": {"name": "svc_pip_token", "environment": "PIP_TOKEN_VAR"}},
        }


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "svc"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "compose.yaml").write_text("services:\n  app:\n    build: .\n")
    (root / "app.py").write_text("print(1)\n")
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STAGECACHE_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("GITHUB_SHA", "a" * 40)
    monkeypatch.setattr(redaction, "_values", set())
    monkeypatch.chdir(tmp_path)
    return root


def test_no_command_prints_or_leaves_a_secret(
    project: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = Engine(project)
    said: list[str] = []

    def run(*argv: str) -> Any:
        out = io.StringIO()
        assert main(["-C", str(project), *argv], out=out, engine=engine) == 0, capsys.readouterr().err
        said.extend([out.getvalue(), capsys.readouterr().err])
        return out.getvalue()

    run("build", "-v", "app")
    run("build", "-v", "--json", "app")
    explained = run("key", "--explain", "app")
    manifest = json.loads(run("key", "--json", "app"))["manifest"]
    engine.token = TOKEN.replace("ab12", "ef56")  # the variable changed
    why = run("key", "--why", "app")
    run("key", "--why", "--json", "app")
    run("store", "ls", "--json")

    everything = "\n".join(said)
    assert TOKEN not in everything
    assert "ef56" not in everything
    assert "PIP_TOKEN_VAR" not in json.dumps(manifest)  # a secret's source is not in the key either
    assert manifest["secrets"] == [["pip_token", "env"]]
    assert "arg      API_TOKEN=<redacted " in explained
    assert "build arg API_TOKEN: '<redacted " in why  # a change of the value is named
    warnings = [line for line in everything.splitlines() if "RUN sees" in line]
    assert len(warnings) == 2  # one line for each build
    assert "build arg API_TOKEN: its value ends up in the image history" in warnings[0]

    leaks = [
        str(path)
        for top in (tmp_path / "store", tmp_path / "cache")
        for path in top.rglob("*")
        if path.is_file() and (TOKEN.encode() in path.read_bytes() or b"ef56" in path.read_bytes())
    ]
    assert leaks == []
    assert (tmp_path / "store" / "v1" / "redaction.key").stat().st_mode & 0o777 == 0o600
