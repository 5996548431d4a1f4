"""Compose files: which files compose reads, which services have a ``build:`` section, and the target
each one is.

Compose finds its own files (``compose.yaml`` or ``docker-compose.yml`` and their override,
``COMPOSE_FILE``), reads ``.env``, ``COMPOSE_PROFILES`` and ``COMPOSE_PROJECT_NAME``, and stagecache
reads the result through ``docker compose config --format json`` run in the project directory as the
user's own ``docker compose`` would be run there: anchors, merge keys, ``extends``, ``include``,
profiles and interpolation resolve exactly as compose resolves them. :func:`discover` follows compose's
rules for finding the files (compose-go's ``cli/options.go`` and compose's ``setEnvWithDotEnv``), to
know what the resolved configuration depends on (its cache, :mod:`stagecache.project.compose_cache`)
and which files a test run passes on with ``-f``.

Every key of a service's ``build:`` is either passed to the build and counted in the key, or refused
with one line naming it, the service and the fix (:data:`BUILD_KEYS`); none is dropped. ``secrets``
are passed as BuildKit secrets, as compose passes them; their values are never read.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..key.spec import BuildOptions, BuildSecret, TargetSpec
from ..refs import default_repository, repository_of
from .settings import Target

# compose-go's DefaultFileNames and DefaultOverrideFileNames, in its order of preference.
BUILD_KEYS: dict[str, str] = {
    "context": "key",  # the directory sent to BuildKit (a Git or URL context is refused)
    "dockerfile": "key",  # --file
    "args": "key",  # --build-arg; the args the reached stages declare are in the key
    "target": "key",  # --target
    "labels": "key",  # --label; the image config holds them
    "platforms": "key",  # one entry: --platform; more cannot be loaded into the daemon (refused)
    "extra_hosts": "key",  # --add-host: a RUN step's /etc/hosts
    "network": "key",  # --network: what a RUN step can reach
    "shm_size": "key",  # --shm-size: a RUN step's /dev/shm
    "ulimits": "key",  # --ulimit: a RUN step's limits
    "entitlements": "key",  # --allow
    "privileged": "key",  # --allow security.insecure
    "tags": "tag",  # tagged after the build, like `image:`
    "cache_from": "pass",  # --cache-from
    "cache_to": "pass",  # --cache-to
    "no_cache": "pass",  # --no-cache (a build stagecache runs; a hit is still a hit)
    "no_cache_filter": "pass",  # --no-cache-filter
    "provenance": "pass",  # --provenance: an attestation beside the image
    "sbom": "pass",  # --sbom: likewise
    "isolation": "refuse",  # Windows containers only; "default" is accepted as the no-op it is
    "pull": "refuse",  # a pull during the build could use another base image than the key names
    "dockerfile_inline": "refuse",
    "additional_contexts": "refuse",
    "secrets": "secret",
    "ssh": "refuse",
}

# Why a key is refused, and what to do instead.
REFUSED = {
    "dockerfile_inline": "the key reads the Dockerfile from a file: put it in one and name it with "
    "`dockerfile:`",
    "additional_contexts": "the key cannot see the other contexts' files: copy from a stage or an image "
    "instead, or build this service with compose",
    "ssh": "build this service with compose",
    "pull": "stagecache keys the base image it has, by ID, and a pull during the build could bring "
    "another: `docker pull` the base image before `stagecache build` and drop `pull: true`",
    "isolation": "it is a Windows container option, and BuildKit on Linux has no isolation modes: remove it",
}


# --- which files compose reads -----------------------------------------------------------------------
def targets_from_compose(data: Mapping[str, Any], compose_file: Path) -> dict[str, Target]:
    """A target for each service with ``build:``; ``compose_file`` names the project in messages."""
    project = str(data.get("name") or compose_file.parent.name)
    targets: dict[str, Target] = {}
    for service, conf in sorted((data.get("services") or {}).items()):
        build = conf.get("build")
        if not build:
            continue
        where = f"{compose_file}: service {service!r}"
        spec, tags = build_spec(service, conf, where, data.get("secrets") or {})
        image = conf.get("image")
        repo = repository_of(image) if image else default_repository(project, service)
        targets[service] = Target(
            spec=spec, repository=repo, image=image or f"{repo}:latest", service=service, tags=tags
        )
    return targets


def build_spec(
    service: str, conf: Mapping[str, Any], where: str, secrets: Mapping[str, Any] | None = None
) -> tuple[TargetSpec, tuple[str, ...]]:
    """A service's build as a :class:`TargetSpec` and its extra tags; a key stagecache cannot honour
    is a :class:`ConfigError` naming it, the service and the fix. ``secrets``: the top-level
    ``secrets:`` that ``build.secrets`` names."""
    build: Mapping[str, Any] = conf["build"]
    for name, value in build.items():
        handling = BUILD_KEYS.get(name)
        if handling is None and not name.startswith("x-"):
            raise ConfigError(
                f"{where}: build.{name} is not known to this stagecache, so it cannot pass it to the "
                "build nor count it in the key; build this service with compose, or remove it"
            )
        if handling == "refuse" and _refused(name, value):
            raise ConfigError(f"{where}: build.{name} is not supported by stagecache; {REFUSED[name]}")

    raw_context = str(build.get("context") or ".")
    if not os.path.isabs(raw_context):  # compose makes a local context absolute: this is a URL
        raise ConfigError(
            f"{where}: build.context {raw_context!r} is not a local directory, and the key can only "
            "cover files stagecache can read; clone it and point `context:` at the checkout"
        )
    context = Path(raw_context)
    dockerfile = Path(build.get("dockerfile") or "Dockerfile")
    if not dockerfile.is_absolute():
        dockerfile = context / dockerfile

    platform = conf.get("platform")
    platforms = [str(p) for p in build.get("platforms") or ()]
    if len(platforms) > 1:
        raise ConfigError(
            f"{where}: build.platforms names {len(platforms)} platforms, but one image goes into the "
            "daemon (`--load`); keep one, or set `platform:` and build the others with compose"
        )
    if platforms and not platform:
        platform = platforms[0]

    hosts = _extra_hosts(build.get("extra_hosts"))
    entitlements = {str(e) for e in build.get("entitlements") or ()}
    if build.get("privileged"):
        entitlements.add("security.insecure")
    network = build.get("network")
    options = BuildOptions(
        extra_hosts=hosts,
        network=str(network) if network and network != "default" else None,
        shm_size=str(build["shm_size"]) if build.get("shm_size") else None,
        ulimits=_ulimits(build.get("ulimits") or {}),
        entitlements=tuple(sorted(entitlements)),
        cache_from=tuple(str(c) for c in build.get("cache_from") or ()),
        cache_to=tuple(str(c) for c in build.get("cache_to") or ()),
        no_cache=bool(build.get("no_cache")),
        no_cache_filter=tuple(_strings(build.get("no_cache_filter"))),
        provenance=_flag(build.get("provenance")),
        sbom=_flag(build.get("sbom")),
    )
    spec = TargetSpec(
        name=service,
        context=context,
        dockerfile=dockerfile,
        stage=build.get("target"),
        build_args={str(k): str(v) for k, v in (build.get("args") or {}).items() if v is not None},
        platform=platform,
        labels={str(k): str(v) for k, v in (build.get("labels") or {}).items()},
        options=options,
        secrets=build_secrets(build.get("secrets") or [], secrets or {}, where),
    )
    return spec, tuple(str(t) for t in build.get("tags") or ())


def build_secrets(entries: object, declared: Mapping[str, Any], where: str) -> tuple[BuildSecret, ...]:
    """``build.secrets`` as compose 2.26 hands them to BuildKit: each names a top-level secret
    (``source``) with ``file:`` or ``environment:``, and is mounted under its ``target`` (else its
    name) as the id; ``uid``, ``gid`` and ``mode`` are ignored by BuildKit, as compose says."""
    out: dict[str, BuildSecret] = {}
    for entry in entries if isinstance(entries, list) else [entries]:
        source = str(entry.get("source") if isinstance(entry, Mapping) else entry)
        target = str(entry.get("target") or "") if isinstance(entry, Mapping) else ""
        conf = declared.get(source)
        if not isinstance(conf, Mapping):
            raise ConfigError(
                f"{where}: build.secrets names {source!r}, which the top-level `secrets:` lacks"
            )
        if conf.get("file"):
            secret = BuildSecret(target or source, "file", str(conf["file"]))
        elif conf.get("environment"):
            secret = BuildSecret(target or source, "env", str(conf["environment"]))
        else:
            raise ConfigError(
                f"{where}: build.secrets {source!r} is neither `file:` nor `environment:`, and a build "
                "can only read those (as compose says): declare it with one of them"
            )
        out[secret.id] = secret
    return tuple(out.values())


def _refused(name: str, value: object) -> bool:
    if name == "isolation":
        return value not in (None, "", "default")
    return bool(value)


def _extra_hosts(value: object) -> tuple[str, ...]:
    """``host=ip`` entries, in compose's order, from a list (``host=ip`` or ``host:ip``) or a map."""
    if not value:
        return ()
    if isinstance(value, Mapping):
        return tuple(f"{host}={ip}" for host, ips in value.items() for ip in _strings(ips))
    out = []
    for entry in _strings(value):
        host, sep, ip = entry.partition("=")
        if not sep:
            host, _, ip = entry.partition(":")
        out.append(f"{host.strip()}={ip.strip()}")
    return tuple(out)


def _ulimits(value: Mapping[str, Any]) -> tuple[str, ...]:
    """``name=soft:hard``, as compose hands ulimits to BuildKit (a single number is both)."""
    out = []
    for name, limit in sorted(value.items()):
        if isinstance(limit, Mapping):
            out.append(f"{name}={limit.get('soft')}:{limit.get('hard')}")
        else:
            out.append(f"{name}={limit}:{limit}")
    return tuple(out)


def _strings(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]  # type: ignore[attr-defined]


def _flag(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def hidden_services(data: Mapping[str, Any], active: Sequence[str]) -> dict[str, tuple[str, ...]]:
    """Services of a configuration read with every profile (``--profile '*'``) that the active
    profiles leave out, with the profiles that would enable each."""
    out = {}
    for name, conf in (data.get("services") or {}).items():
        profiles = tuple(str(p) for p in conf.get("profiles") or ())
        if profiles and not set(profiles) & set(active):
            out[str(name)] = profiles
    return out
