from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.errors import ConfigError
from stagecache.project.compose import targets_from_compose
from stagecache.project.pyproject import read_tool_table
from stagecache.project.values import parse_size
from stagecache.refs import repository_of as split_image

# The shape `docker compose config --format json` gives: contexts absolute, anchors and merges resolved.
COMPOSE = {
    "name": "shop",
    "services": {
        "api-server": {
            "build": {"context": "/src/shop", "dockerfile": "Dockerfile", "target": "prod",
                      "labels": {"org.example.team": "web"}},
            "image": "registry.local:5000/shop/api:prod",
        },
        "api-tests": {"build": {"context": "/src/shop", "dockerfile": "Dockerfile", "target": "dev",
                                "args": {"LEVEL": "2", "UNSET": None}}},
        "db": {"image": "postgres:15"},
    },
}  # fmt: skip


def test_services_with_build_are_targets() -> None:
    targets = targets_from_compose(COMPOSE, Path("/src/shop/docker-compose.yml"))
    assert sorted(targets) == ["api-server", "api-tests"]
    server, tests = targets["api-server"], targets["api-tests"]
    assert server.spec.stage == "prod"
    assert server.spec.dockerfile == Path("/src/shop/Dockerfile")
    assert server.repository == "registry.local:5000/shop/api"
    assert server.image == "registry.local:5000/shop/api:prod"
    assert server.spec.labels == {"org.example.team": "web"}
    assert tests.repository == "shop-api-tests"  # compose's own default image name
    assert tests.spec.build_args == {"LEVEL": "2"}  # an arg without a value is not passed


@pytest.mark.parametrize("key", ["dockerfile_inline", "additional_contexts", "ssh"])
def test_build_options_the_key_cannot_see_are_refused(key: str) -> None:
    data = {"services": {"x": {"build": {"context": "/src", key: {"a": "b"}}}}}
    with pytest.raises(ConfigError, match=f"service 'x': build.{key} is not supported"):
        targets_from_compose(data, Path("/src/compose.yaml"))


@pytest.mark.parametrize(
    ("image", "repo"),
    [("a:1", "a"), ("a", "a"), ("host:5000/a", "host:5000/a"), ("host:5000/a:2", "host:5000/a"),
     ("a@sha256:ff", "a")],
)  # fmt: skip
def test_split_image(image: str, repo: str) -> None:
    assert split_image(image) == repo


@pytest.mark.parametrize(
    ("text", "size"), [("500MB", 500_000_000), ("10GiB", 10 * 1024**3), ("1.5k", 1500), (7, 7)]
)
def test_parse_size(text: str | int, size: int) -> None:
    assert parse_size(text, "x") == size


def test_parse_size_error() -> None:
    with pytest.raises(ConfigError, match=r"write e\.g\. 500MB"):
        parse_size("lots", "pyproject.toml")


def test_tool_table_types_are_checked(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.stagecache]\ntargets = "api"\n')
    with pytest.raises(ConfigError, match="targets has the wrong type"):
        read_tool_table(tmp_path)
    (tmp_path / "pyproject.toml").write_text(
        '[tool.stagecache]\nstore = "ci-cache"\ntest-service = "api-tests"\n'
    )
    assert read_tool_table(tmp_path) == {"store": "ci-cache", "test-service": "api-tests"}


@pytest.mark.parametrize("xdg", [None, "/srv/cache", "relative/cache"])
def test_cache_dir_follows_xdg_like_platformdirs(monkeypatch: pytest.MonkeyPatch, xdg: str | None) -> None:
    import platformdirs

    from stagecache.project.settings import cache_dir

    monkeypatch.delenv("STAGECACHE_CACHE_DIR", raising=False)
    if xdg is None:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    else:
        monkeypatch.setenv("XDG_CACHE_HOME", xdg)
    assert cache_dir() == Path(platformdirs.user_cache_dir("stagecache"))
