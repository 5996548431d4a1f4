"""Image references and the Engine API's socket (moved from test_archive.py when archive.py went)."""

from __future__ import annotations

import json
from pathlib import Path

from stagecache.engine.api import EngineAPI
from stagecache.refs import split_tag


def test_split_tag() -> None:
    assert split_tag("repo:tag") == ("repo", "tag")
    assert split_tag("repo") == ("repo", "latest")
    assert split_tag("registry:5000/repo") == ("registry:5000/repo", "latest")
    assert split_tag("registry:5000/repo:1.0") == ("registry:5000/repo", "1.0")


def test_engine_api_is_used_only_where_the_cli_would_use_that_socket(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    home = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}"}) == EngineAPI(str(sock))
    assert EngineAPI.detect({**home, "DOCKER_HOST": "tcp://10.0.0.1:2375"}) is None
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONTEXT": "remote"}) is None
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}) is None
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}"}) is None
