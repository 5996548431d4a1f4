"""A test run's own compose model (stagecache.testenv.isolate): what it keeps of the user's services and
what it changes so that nothing of the user's is touched. The model below has the shape `docker compose
config --format json` gives (compose 2.26.1) for a project laid out as public FastAPI projects are: the
server as the only built service, Postgres with a healthcheck, a named volume declared with `name:`,
published ports, the source bind-mounted for development, an external network; and one where Postgres
keeps its data in a host directory (`./pgdata`), as many projects' compose files have it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from stagecache.errors import ConfigError
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


def is_dir(path: str) -> bool:
    """The host as these models have it: a socket and a file, the rest directories (or absent)."""
    return not path.endswith((".sock", ".sql", ".conf"))


def run_model(model: dict[str, Any] = MODEL, **options: Any) -> Any:
    return isolate(model, "api", project="sc-api-1", images=IMAGES, contexts=[ROOT], is_dir=is_dir, **options)


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
        "sc-bind-db": {"labels": {RUN_LABEL: "sc-api-1", REPLACES_LABEL: "/project/pgconf"}},
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


def test_a_writable_bind_mount_of_a_dependency_is_a_fresh_volume_of_the_run() -> None:
    isolation = run_model()
    db = {m["target"]: m for m in isolation.model["services"]["db"]["volumes"]}
    assert db["/etc/postgresql/conf.d"] == {"type": "volume", "source": "sc-bind-db",
                                            "target": "/etc/postgresql/conf.d", "volume": {}}  # fmt: skip
    assert isolation.replaced_mounts == {"db": ["/project/pgconf"]}
    assert isolation.bind_volumes == {"sc-bind-db": "/project/pgconf"}
    assert "sc-bind-db" not in isolation.volumes  # not one of the user's volumes: said on its own line
    line = ("db", "a fresh volume for the run instead of the writable bind mount ./pgconf: nothing of yours "
                  "is written (mount it :ro to share it; --keep-mounts keeps them)")  # fmt: skip
    assert line in isolation.notes(ROOT)
    assert (
        "api",
        "fresh volumes for the run instead of db-data (shop-db-data), uploads",
    ) in isolation.notes()


def test_read_only_bind_mounts_of_a_dependency_stay_also_of_the_build_context() -> None:
    db = {m["target"]: m for m in run_model().model["services"]["db"]["volumes"]}
    assert db["/docker-entrypoint-initdb.d/init.sql"] == MODEL["services"]["db"]["volumes"][1]


def test_a_writable_bind_mount_of_a_host_file_or_socket_is_made_read_only() -> None:
    isolation = run_model()
    api = {m["target"]: m for m in isolation.model["services"]["api"]["volumes"]}
    assert api["/var/run/docker.sock"] == {"type": "bind", "source": "/var/run/docker.sock",
                                           "target": "/var/run/docker.sock", "read_only": True}  # fmt: skip
    assert isolation.read_only_mounts == {"api": ["/var/run/docker.sock"]}
    line = ("api", "/var/run/docker.sock mounted read-only: nothing of yours is written, and no volume can "
                   "stand in for a file (--keep-mounts keeps them)")  # fmt: skip
    assert line in isolation.notes(ROOT)


# `docker compose config --format json` (compose 2.26.1) of
#   services:
#     api: {build: ./api, depends_on: [db, cache, files]}
#     db: {image: postgres:15, volumes: ["./pgdata:/var/lib/postgresql/data", "./pg.conf:/etc/pg.conf",
#                                        "/srv/backups:/backups"]}
#     cache: {image: redis:7, volumes_from: ["files:ro"]}
#     files: {image: busybox, volumes: ["/srv/shared:/shared:ro"]}
# beside a user's stack whose Postgres uses ./pgdata too.
PGDATA: dict[str, Any] = {
    "name": "shop",
    "services": {
        "api": {
            "build": {"context": "/project/api", "dockerfile": "Dockerfile"},
            "depends_on": {
                name: {"condition": "service_started", "required": True} for name in ("db", "cache", "files")
            },
            "networks": {"default": None},
        },
        "db": {
            "image": "postgres:15",
            "networks": {"default": None},
            "volumes": [
                {
                    "type": "bind",
                    "source": "/project/pgdata",
                    "target": "/var/lib/postgresql/data",
                    "bind": {"create_host_path": True},
                },
                {
                    "type": "bind",
                    "source": "/project/pg.conf",
                    "target": "/etc/pg.conf",
                    "bind": {"create_host_path": True},
                },
                {"type": "bind", "source": "/srv/backups", "target": "/backups", "bind": {}},
            ],
        },
        "cache": {
            "image": "redis:7",
            "depends_on": {"files": {"condition": "service_started", "required": True}},
            "networks": {"default": None},
            "volumes_from": ["files:ro"],
        },
        "files": {
            "image": "busybox",
            "networks": {"default": None},
            "volumes": [
                {
                    "type": "bind",
                    "source": "/srv/shared",
                    "target": "/shared",
                    "read_only": True,
                    "bind": {"create_host_path": True},
                }
            ],
        },
    },
    "networks": {"default": {"name": "shop_default", "ipam": {}}},
    "volumes": {"sc-bind-db": {"name": "a-user-volume"}},  # a key the run's own would take
}


def pgdata_run(**options: Any) -> Any:
    images = {"api": "shop-api:sc-1234"}
    return isolate(PGDATA, "api", project="sc-api-2", images=images, contexts=[Path("/project/api")],
                   is_dir=is_dir, **options)  # fmt: skip


def test_a_dependencys_data_directory_is_never_the_users() -> None:
    isolation = pgdata_run()
    db = isolation.model["services"]["db"]["volumes"]
    assert db == [
        {"type": "volume", "source": "sc-bind-db-2", "target": "/var/lib/postgresql/data", "volume": {}},
        {"type": "bind", "source": "/project/pg.conf", "target": "/etc/pg.conf",
         "bind": {"create_host_path": True}, "read_only": True},
        {"type": "volume", "source": "sc-bind-db-3", "target": "/backups", "volume": {}},
    ]  # fmt: skip
    assert isolation.model["volumes"] == {
        "sc-bind-db-2": {"labels": {RUN_LABEL: "sc-api-2", REPLACES_LABEL: "/project/pgdata"}},
        "sc-bind-db-3": {"labels": {RUN_LABEL: "sc-api-2", REPLACES_LABEL: "/srv/backups"}},
    }  # labelled with the run, so `down --volumes` and the labelled clean-up remove them
    assert isolation.volumes == {}  # the user's sc-bind-db is not used, and not replaced
    notes = isolation.notes(Path("/project"))
    assert (
        "db",
        "fresh volumes for the run instead of the writable bind mounts ./pgdata, /srv/backups: "
        "nothing of yours is written (mount it :ro to share it; --keep-mounts keeps them)",
    ) in notes
    assert ("db", "./pg.conf mounted read-only: nothing of yours is written, and no volume can stand in "
                  "for a file (--keep-mounts keeps them)") in notes  # fmt: skip


def test_volumes_from_a_service_of_the_run_and_read_only_binds_outside_the_context_stay() -> None:
    isolation = pgdata_run()
    assert isolation.services == ["api", "cache", "db", "files"]
    assert isolation.model["services"]["cache"]["volumes_from"] == ["files:ro"]
    assert isolation.model["services"]["files"]["volumes"] == PGDATA["services"]["files"]["volumes"]
    assert "files" not in isolation.replaced_mounts
    assert "files" not in isolation.read_only_mounts


def test_volumes_from_a_container_is_refused_in_one_line() -> None:
    model = copy.deepcopy(PGDATA)
    model["services"]["cache"]["volumes_from"] = ["container:users-redis", "files:ro"]
    with pytest.raises(ConfigError) as refused:
        isolate(model, "api", project="p", images=IMAGES, contexts=[Path("/project/api")], is_dir=is_dir)
    assert str(refused.value) == (
        "service 'cache': volumes_from container:users-redis shares the volumes of a container outside the "
        "test run, which the tests could change: name a service of the compose file instead "
        "(volumes_from: [SERVICE]), or pass --keep-mounts to share them anyway"
    )
    kept = isolate(model, "api", project="p", images=IMAGES, contexts=[Path("/project/api")],
                   is_dir=is_dir, keep_mounts=True)  # fmt: skip
    assert kept.model["services"]["cache"]["volumes_from"] == ["container:users-redis", "files:ro"]


def test_a_service_outside_the_run_is_not_refused() -> None:
    model = copy.deepcopy(PGDATA)
    model["services"]["admin"] = {"image": "adminer", "volumes_from": ["container:users-redis"]}
    assert "admin" not in pgdata_run().model["services"]
    isolate(model, "api", project="p", images=IMAGES, contexts=[Path("/project/api")], is_dir=is_dir)


def test_the_host_is_asked_what_a_path_is() -> None:
    from stagecache.testenv import _dir_or_absent

    assert _dir_or_absent("/")  # a directory: a fresh volume
    assert _dir_or_absent("/no/such/path/at/all")  # absent: compose would make a directory
    assert not _dir_or_absent(__file__)  # a file: read-only


def test_keep_mounts_keeps_them_as_they_are() -> None:
    isolation = run_model(keep_mounts=True)
    assert isolation.model["services"]["api"]["volumes"] == MODEL["services"]["api"]["volumes"]
    assert isolation.model["services"]["db"]["volumes"] == MODEL["services"]["db"]["volumes"]
    assert isolation.dropped_mounts == isolation.read_only_mounts == isolation.replaced_mounts == {}
    assert isolation.bind_volumes == {}
    kept = pgdata_run(keep_mounts=True)
    assert kept.model["services"]["db"]["volumes"] == PGDATA["services"]["db"]["volumes"]
    assert "volumes" not in kept.model


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
