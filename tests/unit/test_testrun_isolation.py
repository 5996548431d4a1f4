"""A test run's own compose model (stagecache.testenv.isolate): what it keeps of the user's services and
what it changes so that nothing of the user's is touched. The model below has the shape `docker compose
config --format json` gives (compose 2.26.1) for a project laid out as public FastAPI projects are: the
server as the only built service, Postgres with a healthcheck, a named volume declared with `name:`,
published ports, the source bind-mounted for development, an external network."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from stagecache.testenv import REPLACES_LABEL, RUN_LABEL, isolate, overlaps

ROOT = Path("/project")
IMAGES = {"api": "shop-api:sc-1234"}

MODEL: dict[str, Any] = {
    "name": "shop",
    "networks": {
        "default": {"name": "shop_default", "ipam": {}},
        "proxy": {"name": "traefik-public", "ipam": {}, "external": True},
        "fixed": {"name": "shop_fixed", "ipam": {"config": [{"subnet": "10.5.0.0/16"}]}},
    },
    "services": {
        "api": {
            "build": {"context": "/project", "dockerfile": "Dockerfile"},
            "command": ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--reload"],
            "container_name": "shop-api",
            "depends_on": {"db": {"condition": "service_healthy", "required": True}},
            "entrypoint": None,
            "environment": {"DATABASE_URL": "postgresql://app:app@db:5432/app", "PRICE": "$$5"},
            "image": "shop-api:latest",
            "networks": {"default": None, "proxy": None},
            "ports": [{"mode": "ingress", "target": 8000, "published": "8000", "protocol": "tcp"}],
            "volumes": [
                {
                    "type": "bind",
                    "source": "/project/app",
                    "target": "/app/app",
                    "bind": {"create_host_path": True},
                },
                {"type": "bind", "source": "/var/run/docker.sock", "target": "/var/run/docker.sock"},
                {"type": "volume", "source": "uploads", "target": "/uploads", "volume": {}},
            ],
        },
        "db": {
            "command": None,
            "entrypoint": None,
            "container_name": "postgres",
            "environment": {"POSTGRES_PASSWORD": "app", "POSTGRES_USER": "app", "POSTGRES_DB": "app"},
            "healthcheck": {"test": ["CMD-SHELL", "pg_isready -U app"], "interval": "1s"},
            "image": "postgres:15",
            "networks": {"default": None, "fixed": {"ipv4_address": "10.5.0.5"}},
            "ports": [{"mode": "ingress", "target": 5432, "published": "5432", "protocol": "tcp"}],
            "volumes": [
                {"type": "volume", "source": "db-data", "target": "/var/lib/postgresql/data", "volume": {}},
                {
                    "type": "bind",
                    "source": "/project/init.sql",
                    "target": "/docker-entrypoint-initdb.d/init.sql",
                    "read_only": True,
                },
                {"type": "bind", "source": "/project/pgconf", "target": "/etc/postgresql/conf.d"},
                {"type": "volume", "target": "/anonymous", "volume": {}},
            ],
            "profiles": ["backend"],
        },
        "adminer": {
            "image": "adminer",
            "depends_on": {"db": {"condition": "service_started", "required": True}},
            "ports": [{"mode": "ingress", "target": 8080, "published": "8080", "protocol": "tcp"}],
        },
    },
    "volumes": {
        "db-data": {"name": "shop-db-data"},
        "uploads": {"name": "uploads", "external": True},
        "cache": {"name": "shop_cache", "driver_opts": {"type": "none", "o": "bind", "device": "/srv"}},
    },
    "secrets": {"token": {"name": "shop_token", "file": "/project/secrets/token"}},
    "x-common": {"restart": "always"},
}


def run_model(**options: Any) -> Any:
    return isolate(MODEL, "api", project="sc-api-1", images=IMAGES, contexts=[ROOT], **options)


def test_only_the_service_and_its_dependencies_run() -> None:
    isolation = run_model()
    assert isolation.services == ["api", "db"]
    assert set(isolation.model["services"]) == {"api", "db"}  # adminer depends on db, not the reverse
    assert set(isolation.model) == {"services", "volumes", "networks", "secrets"}  # no name, no x-


def test_the_users_model_is_not_changed() -> None:
    before = copy.deepcopy(MODEL)
    run_model()
    assert before == MODEL


def test_every_named_volume_is_a_fresh_one_of_the_run() -> None:
    isolation = run_model()
    assert isolation.model["volumes"] == {
        "db-data": {"labels": {RUN_LABEL: "sc-api-1", REPLACES_LABEL: "shop-db-data"}},
        "uploads": {"labels": {RUN_LABEL: "sc-api-1", REPLACES_LABEL: "uploads"}},
    }  # no name:, no external:, no driver options: compose names them sc-api-1_db-data, …
    assert isolation.volumes == {"db-data": "shop-db-data", "uploads": "uploads"}
    mounts = isolation.model["services"]["db"]["volumes"]
    assert {"type": "volume", "target": "/anonymous", "volume": {}} in mounts  # the run's own, removed after


def test_no_port_is_published_and_no_container_name_kept() -> None:
    isolation = run_model()
    for conf in isolation.model["services"].values():
        assert "ports" not in conf
        assert "container_name" not in conf
        assert "profiles" not in conf
        assert conf["labels"][RUN_LABEL] == "sc-api-1"
    assert isolation.ports == {"api": ["8000"], "db": ["5432"]}


def test_networks_are_the_runs_own() -> None:
    isolation = run_model()
    assert isolation.model["networks"] == {
        "default": {"labels": {RUN_LABEL: "sc-api-1"}},
        "fixed": {"labels": {RUN_LABEL: "sc-api-1"}},
        "proxy": {"labels": {RUN_LABEL: "sc-api-1"}},
    }  # the external traefik-public is not joined; the fixed subnet would clash with the user's network
    assert isolation.model["services"]["db"]["networks"] == {"default": None, "fixed": {}}


def test_a_built_service_runs_the_cached_image_and_compose_never_builds() -> None:
    api = run_model().model["services"]["api"]
    assert "build" not in api
    assert (api["image"], api["pull_policy"]) == ("shop-api:sc-1234", "never")
    assert api["environment"]["PRICE"] == "$$5"  # still escaped, as compose wrote it
    db = run_model().model["services"]["db"]
    assert (db["image"], "pull_policy" in db) == ("postgres:15", False)


def test_bind_mounts_of_the_context_are_dropped_from_the_test_service() -> None:
    isolation = run_model()
    targets = [m["target"] for m in isolation.model["services"]["api"]["volumes"]]
    assert targets == ["/var/run/docker.sock", "/uploads"]  # a host path outside the context stays
    assert isolation.dropped_mounts == {"api": ["/project/app"]}
    notes = isolation.notes(ROOT)
    assert notes[0] == ("api", "not mounting ./app from the build context: the tests run the image's copy "
                               "(--keep-mounts keeps them)")  # fmt: skip


def test_bind_mounts_of_the_context_are_read_only_in_other_services() -> None:
    isolation = run_model()
    db = {m["target"]: m for m in isolation.model["services"]["db"]["volumes"]}
    assert db["/etc/postgresql/conf.d"]["read_only"] is True
    assert db["/docker-entrypoint-initdb.d/init.sql"]["read_only"] is True
    assert isolation.read_only_mounts == {"db": ["/project/pgconf"]}  # init.sql was read-only already
    line = ("db", "./pgconf mounted read-only: it is in the build context (--keep-mounts keeps them)")
    assert line in isolation.notes(ROOT)
    assert (
        "api",
        "fresh volumes for the run instead of db-data (shop-db-data), uploads",
    ) in isolation.notes()


def test_keep_mounts_keeps_them_as_they_are() -> None:
    isolation = run_model(keep_mounts=True)
    assert isolation.model["services"]["api"]["volumes"] == MODEL["services"]["api"]["volumes"]
    assert isolation.dropped_mounts == isolation.read_only_mounts == {}
    assert "read_only" not in isolation.model["services"]["db"]["volumes"][2]


def test_serving_keeps_the_ports() -> None:
    isolation = run_model(publish_ports=True)
    assert isolation.model["services"]["api"]["ports"] == MODEL["services"]["api"]["ports"]
    assert isolation.ports == {}


def test_a_mount_that_holds_the_context_is_dropped_too() -> None:
    assert overlaps("/project", [Path("/project/backend")])  # `.:/app` with the context ./backend
    assert overlaps("/project/backend/app", [Path("/project/backend")])
    assert overlaps("/project/backend/", [Path("/project/backend")])
    assert not overlaps("/project/frontend", [Path("/project/backend")])
    assert not overlaps("/project/backend-data", [Path("/project/backend")])


def test_host_network_is_named() -> None:
    model = copy.deepcopy(MODEL)
    model["services"]["db"]["network_mode"] = "host"
    del model["services"]["db"]["networks"]
    isolation = isolate(model, "api", project="p", images=IMAGES, contexts=[ROOT])
    assert isolation.host_network == ["db"]
    assert (
        "db",
        "uses the host's network (network_mode: host): its ports are the host's",
    ) in isolation.notes()
