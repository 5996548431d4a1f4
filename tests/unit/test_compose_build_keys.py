"""Every `build:` key compose accepts is passed to the build and counted in the key, or refused in one
line naming it, the service and the fix; inactive profiles give a hint instead of "unknown target"."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from stagecache.engine.docker import Docker
from stagecache.errors import ConfigError
from stagecache.key.digest import diff
from stagecache.key.inputs import collect
from stagecache.key.spec import BuildOptions
from stagecache.process import Completed
from stagecache.project.compose import BUILD_KEYS, build_spec, hidden_services, targets_from_compose
from stagecache.project.settings import Settings
from tests.fakes import Images

WHERE = Path("/src/compose.yaml")
# Compose's own list (compose-spec build.md; compose-go's schema, up to v2.13).
COMPOSE_BUILD_KEYS = {
    "context", "dockerfile", "dockerfile_inline", "entitlements", "args", "ssh", "labels", "cache_from",
    "cache_to", "no_cache", "no_cache_filter", "additional_contexts", "network", "provenance", "sbom",
    "pull", "target", "shm_size", "extra_hosts", "isolation", "privileged", "secrets", "tags", "ulimits",
    "platforms",
}  # fmt: skip


def service(**build: Any) -> dict[str, Any]:
    return {"build": {"context": "/src", "dockerfile": "Dockerfile", **build}}


def spec_of(**build: Any) -> Any:
    return build_spec("web", service(**build), f"{WHERE}: service 'web'")


def test_the_table_covers_every_key_compose_knows() -> None:
    assert set(BUILD_KEYS) == COMPOSE_BUILD_KEYS


# What `docker compose config --format json` (2.26) gives for each, and what the build gets.
ACCEPTED = [
    ("extra_hosts", ["a.test=10.0.0.1", "b.test=::1"], "extra_hosts", ("a.test=10.0.0.1", "b.test=::1")),
    ("extra_hosts", ["a.test:10.0.0.1"], "extra_hosts", ("a.test=10.0.0.1",)),
    ("extra_hosts", {"a.test": ["10.0.0.1", "::1"]}, "extra_hosts", ("a.test=10.0.0.1", "a.test=::1")),
    ("network", "host", "network", "host"),
    ("network", "default", "network", None),
    ("shm_size", "268435456", "shm_size", "268435456"),
    ("ulimits", {"nproc": 65535, "nofile": {"soft": 1024, "hard": 2048}}, "ulimits",
     ("nofile=1024:2048", "nproc=65535:65535")),
    ("entitlements", ["network.host"], "entitlements", ("network.host",)),
    ("privileged", True, "entitlements", ("security.insecure",)),
    ("cache_from", ["type=registry,ref=x/y:cache"], "cache_from", ("type=registry,ref=x/y:cache",)),
    ("cache_to", ["type=inline"], "cache_to", ("type=inline",)),
    ("no_cache", True, "no_cache", True),
    ("no_cache_filter", ["dev"], "no_cache_filter", ("dev",)),
    ("provenance", False, "provenance", "false"),
    ("sbom", "true", "sbom", "true"),
]  # fmt: skip


@pytest.mark.parametrize(("key", "value", "field", "expected"), ACCEPTED)
def test_accepted_keys_become_build_options(key: str, value: Any, field: str, expected: Any) -> None:
    spec, _ = spec_of(**{key: value})
    assert getattr(spec.options, field) == expected


@pytest.mark.parametrize(
    ("key", "value"),
    [("isolation", "default"), ("pull", False), ("privileged", False), ("secrets", []), ("platforms", [])],
)
def test_keys_at_their_default_are_accepted(key: str, value: Any) -> None:
    spec, _ = spec_of(**{key: value})
    assert spec.options == BuildOptions()


@pytest.mark.parametrize(
    ("key", "value", "fix"),
    [
        ("dockerfile_inline", "FROM x", "put it in one and name it with `dockerfile:`"),
        ("additional_contexts", {"a": "../a"}, "copy from a stage or an image"),
        ("ssh", ["default"], "build this service with compose"),
        ("pull", True, "`docker pull` the base image before `stagecache build`"),
        ("isolation", "hyperv", "Windows container option"),
    ],
)
def test_refused_keys_name_the_key_the_service_and_the_fix(key: str, value: Any, fix: str) -> None:
    with pytest.raises(ConfigError) as raised:
        spec_of(**{key: value})
    message = str(raised.value)
    assert f"{WHERE}: service 'web': build.{key} is not supported by stagecache; " in message
    assert fix in message
    assert "\n" not in message


def test_more_than_one_platform_is_refused_and_one_is_the_platform() -> None:
    with pytest.raises(ConfigError, match=r"service 'web': build.platforms names 2 platforms.*keep one"):
        spec_of(platforms=["linux/amd64", "linux/arm64"])
    spec, _ = spec_of(platforms=["linux/arm64"])
    assert spec.platform == "linux/arm64"


def test_a_remote_context_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"build.context 'https://github.com/a/b.git' is not a local"):
        spec_of(context="https://github.com/a/b.git")


def test_an_unknown_key_is_refused_and_extensions_are_not() -> None:
    with pytest.raises(ConfigError, match=r"build.frobnicate is not known to this stagecache"):
        spec_of(frobnicate=True)
    spec_of(**{"x-team": "web"})


def test_tags_are_extra_image_names() -> None:
    data = {"name": "shop", "services": {"web": service(tags=["reg/web:1", "web:extra"])}}
    (target,) = targets_from_compose(data, WHERE).values()
    assert target.tags == ("reg/web:1", "web:extra")
    assert target.image == "shop-web:latest"


# --- the key --------------------------------------------------------------------------------------------
@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim\nCOPY app.py /app/\nRUN cat /etc/hosts\n")
    (tmp_path / "app.py").write_text("print(1)\n")
    return tmp_path


def manifest(context: Path, **build: Any) -> dict[str, Any]:
    spec, _ = build_spec("web", {"build": {"context": str(context), **build}}, "w")
    images = Images(lambda ref: "sha256:" + "1" * 64)
    return collect(spec, images=images, platform="linux/amd64").public


@pytest.mark.parametrize(
    ("key", "value"),
    [("extra_hosts", ["a.test=10.0.0.1"]), ("network", "none"), ("shm_size", "1073741824"),
     ("ulimits", {"nofile": 1024}), ("entitlements", ["network.host"]), ("privileged", True)],
)  # fmt: skip
def test_options_that_change_what_run_sees_are_in_the_key(context: Path, key: str, value: Any) -> None:
    before, after = manifest(context), manifest(context, **{key: value})
    assert before["build_options"] == {}
    assert after["build_options"]
    assert json.dumps(before, sort_keys=True) != json.dumps(after, sort_keys=True)
    field = "entitlements" if key == "privileged" else key
    assert any(line.startswith(f"compose build.{field}: ") for line in diff(before, after).other)


@pytest.mark.parametrize(
    ("key", "value"),
    [("cache_from", ["x/y:cache"]), ("cache_to", ["type=inline"]), ("no_cache", True), ("sbom", True),
     ("network", "default"), ("tags", ["x:1"])],
)  # fmt: skip
def test_options_that_do_not_change_the_image_are_not(context: Path, key: str, value: Any) -> None:
    assert manifest(context) == manifest(context, **{key: value})


def test_build_argv_passes_every_option(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def runner(argv: Any, **kwargs: Any) -> Completed:
        calls.append(list(argv))
        return Completed(list(argv), 0, "", "")

    options = BuildOptions(
        extra_hosts=("a.test=10.0.0.1",), network="host", shm_size="1024", ulimits=("nofile=1:2",),
        entitlements=("network.host",), cache_from=("c:1",), cache_to=("type=inline",), no_cache=True,
        no_cache_filter=("dev",), provenance="false", sbom="true",
    )  # fmt: skip
    Docker(runner=runner).build(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", target=None, tags=[], build_args={},
        labels={}, iidfile=tmp_path / "iid", options=options,
    )  # fmt: skip
    assert calls == [[
        "docker", "buildx", "build", "--file", str(tmp_path / "Dockerfile"),
        "--add-host", "a.test=10.0.0.1", "--network", "host", "--shm-size", "1024", "--ulimit", "nofile=1:2",
        "--allow", "network.host", "--cache-from", "c:1", "--cache-to", "type=inline", "--no-cache",
        "--no-cache-filter", "dev", "--provenance", "false", "--sbom", "true",
        "--iidfile", str(tmp_path / "iid"), "--load", str(tmp_path),
    ]]  # fmt: skip


# --- profiles -------------------------------------------------------------------------------------------
ALL_PROFILES = {
    "services": {
        "api": service(),
        "debug": {**service(), "profiles": ["debug", "tools"]},
        "db": {"image": "postgres:15", "profiles": ["db"]},
        "worker": {**service(), "profiles": ["workers"]},
    }
}


def test_hidden_services_are_those_no_active_profile_enables() -> None:
    assert hidden_services(ALL_PROFILES, ["workers"]) == {"debug": ("debug", "tools"), "db": ("db",)}


def test_a_target_behind_an_inactive_profile_says_which_profile_enables_it() -> None:
    data = {"services": {"api": service()}}
    settings = Settings(Path("/src"), targets_from_compose(data, WHERE), [])
    settings.hidden_services = lambda: hidden_services(ALL_PROFILES, [])
    with pytest.raises(ConfigError) as raised:
        settings.select(["debug"])
    assert str(raised.value) == (
        "service 'debug' is in profile 'debug' or 'tools', which is not active: pass --profile debug "
        "(or set COMPOSE_PROFILES=debug)"
    )
    with pytest.raises(ConfigError, match="unknown target 'nope'; targets: api"):
        settings.select(["nope"])
