"""A test run's own compose project: the user's services as compose resolved them, changed so that
the run touches nothing of the user's.

:func:`isolate` is pure. From the resolved model (``docker compose config --format json``) it keeps
the service and what it depends on, and for the run:

* every named volume (also one declared with ``name:``, ``external: true`` or a driver's options that
  bind a host directory) becomes a fresh volume of the run, labelled with the run's project; so does
  every network (an external or ``name:``-d one is the user's, and a fixed subnet would clash with it);
* no service publishes a host port (``ports:`` go; services reach each other on the run's network),
  and none keeps a ``container_name`` (the user's containers have those names);
* services that compose would build run the image the cache gave (``build:`` goes, compose never
  builds);
* a bind mount that reaches into a build context is dropped from a built service (the image holds
  what the key describes, and nothing the tests write lands in the context);
* every other bind mount that is not read-only (``:ro``, ``read_only: true``) is the user's data
  (``./pgdata:/var/lib/postgresql/data``): a host directory (or a path compose would create) becomes a
  fresh volume of the run, labelled as the named volumes are and removed with them; a host file, socket
  or device, which no volume can stand in for, is mounted read-only. Read-only bind mounts of a
  dependency stay, also of the build context: nothing can be written through them;
* ``volumes_from: [container:NAME]`` (a container outside the run, whose volumes are the user's) is
  refused; ``volumes_from`` naming a service of the run stays (that service's volumes are the run's).

``keep_mounts`` keeps every bind mount and ``volumes_from`` as compose resolved them.

:func:`compose_project` writes the result to a file of its own: compose runs with that file alone,
under the run's project name, so ``down --volumes`` can only remove what the run created.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .engine.base import Compose
from .errors import ConfigError
from .refs import LABEL_PREFIX

RUN_LABEL = f"{LABEL_PREFIX}.run"  # on every container, volume and network a run creates: its project
REPLACES_LABEL = f"{LABEL_PREFIX}.replaces"  # on a run's volume: the user's volume or host path it replaces
BIND_VOLUME_PREFIX = "sc-bind-"  # the key of a run's volume standing in for a bind mount

_TOP_LEVEL_KEPT = ("secrets", "configs")  # file-based, read-only: kept as compose resolved them


@dataclass
class Isolation:
    """The run's compose model, and what was changed, for the lines that say so."""

    model: dict[str, Any]
    services: list[str]  # the service, then its dependencies
    volumes: dict[str, str] = field(default_factory=dict)  # volume key -> the user's volume name it replaces
    ports: dict[str, list[str]] = field(default_factory=dict)  # service -> host ports no longer published
    dropped_mounts: dict[str, list[str]] = field(default_factory=dict)  # service -> host paths not mounted
    replaced_mounts: dict[str, list[str]] = field(default_factory=dict)  # service -> host dirs now volumes
    read_only_mounts: dict[str, list[str]] = field(default_factory=dict)  # service -> host files made ro
    bind_volumes: dict[str, str] = field(default_factory=dict)  # run volume key -> the host path it replaces
    host_network: list[str] = field(default_factory=list)  # services on the host's network: not isolated

    def notes(self, root: Path | None = None, *, keep_mounts_hint: bool = True) -> list[tuple[str, str]]:
        """(service, line) for each kind of change that the user may need to know about."""
        lines = []
        hint = " (--keep-mounts keeps them)" if keep_mounts_hint else ""
        also = "; --keep-mounts keeps them" if keep_mounts_hint else ""
        for service, paths in self.dropped_mounts.items():
            shown = ", ".join(_shown(p, root) for p in paths)
            lines.append((service, f"not mounting {shown} from the build context: the tests run the image's "
                                   f"copy{hint}"))  # fmt: skip
        for service, paths in self.replaced_mounts.items():
            shown = ", ".join(_shown(p, root) for p in paths)
            what = "a fresh volume" if len(paths) == 1 else "fresh volumes"
            line = f"{what} for the run instead of the writable bind mount{'s' * (len(paths) > 1)} {shown}: "
            lines.append((service, line + f"nothing of yours is written (mount it :ro to share it{also})"))
        for service, paths in self.read_only_mounts.items():
            shown = ", ".join(_shown(p, root) for p in paths)
            lines.append((service, f"{shown} mounted read-only: nothing of yours is written, and no volume "
                                   f"can stand in for a file{hint}"))  # fmt: skip
        if self.volumes:
            replaced = ", ".join(f"{key} ({name})" if name and name != key else key
                                 for key, name in sorted(self.volumes.items()))  # fmt: skip
            lines.append((self.services[0], f"fresh volumes for the run instead of {replaced}"))
        for service in self.host_network:
            lines.append((service, "uses the host's network (network_mode: host): its ports are the host's"))
        return lines


def _shown(path: str, root: Path | None) -> str:
    if root is not None:
        with contextlib.suppress(ValueError):
            return "./" + Path(path).relative_to(root).as_posix()
    return path


def dependencies(services: Mapping[str, Any], service: str) -> list[str]:
    """Every service ``service`` depends on, directly or not, sorted. (Compose's model already lists
    the dependencies that ``links``, ``network_mode: service:`` and ``volumes_from`` imply.)"""
    seen: set[str] = set()
    todo = [service]
    while todo:
        for dep in services.get(todo.pop(), {}).get("depends_on") or {}:
            if dep not in seen and dep != service:
                seen.add(dep)
                todo.append(dep)
    return sorted(seen)


def overlaps(path: str, contexts: Sequence[Path]) -> bool:
    """Whether a host path is a build context, inside one, or holds one."""
    mine = Path(os.path.normpath(path))
    for context in contexts:
        other = Path(os.path.normpath(context))
        if mine == other or other in mine.parents or mine in other.parents:
            return True
    return False


def isolate(
    data: Mapping[str, Any],
    service: str,
    *,
    project: str,
    images: Mapping[str, str],
    contexts: Sequence[Path],
    keep_mounts: bool = False,
    publish_ports: bool = False,
    is_dir: Callable[[str], bool] | None = None,
) -> Isolation:
    """The run's own compose model for ``service`` and its dependencies (see the module's doc).

    ``images``: the image each built service runs; ``contexts``: the project's build contexts;
    ``is_dir``: whether a bind mount's host path is a directory, or absent (compose would make one)."""
    all_services = data.get("services") or {}
    names = [service, *dependencies(all_services, service)]
    out = Isolation(model={}, services=names)
    services: dict[str, Any] = {}
    used_volumes: set[str] = set()
    used_networks: set[str] = set()
    mounts = _Mounts(contexts, keep_mounts, is_dir or _dir_or_absent, set(data.get("volumes") or {}), out)
    for name in names:
        conf = json.loads(json.dumps(all_services.get(name) or {}))  # a deep copy, JSON values only
        for key in ("container_name", "profiles"):
            conf.pop(key, None)
        if not publish_ports and conf.get("ports"):
            out.ports[name] = [str(p.get("published") or p.get("target")) for p in conf["ports"]]
            del conf["ports"]
        built = name in images
        if built:
            conf.pop("build", None)
            conf["image"] = images[name]
            conf["pull_policy"] = "never"
        conf["labels"] = {**(conf.get("labels") or {}), RUN_LABEL: project}
        if not keep_mounts:
            _refuse_containers_volumes(name, conf.get("volumes_from") or [])
        conf["volumes"] = mounts.of(name, conf.get("volumes") or [], built)
        if not conf["volumes"]:
            del conf["volumes"]
        used_volumes.update(v["source"] for v in conf.get("volumes", []) if v.get("type") == "volume"
                            and v.get("source"))  # fmt: skip
        mode = str(conf.get("network_mode") or "")
        if mode == "host":
            out.host_network.append(name)
        attachments = conf.get("networks")
        if isinstance(attachments, dict):
            for net, attached in attachments.items():
                used_networks.add(net)
                if isinstance(attached, dict):
                    for key in ("ipv4_address", "ipv6_address"):
                        attached.pop(key, None)
        elif not mode:
            used_networks.add("default")
        services[name] = conf

    declared_volumes = data.get("volumes") or {}
    volumes = {}
    for key in sorted(used_volumes):
        if key in out.bind_volumes:
            volumes[key] = {"labels": {RUN_LABEL: project, REPLACES_LABEL: out.bind_volumes[key]}}
            continue
        declared = declared_volumes.get(key) or {}
        out.volumes[key] = str(declared.get("name") or key)
        volumes[key] = {"labels": {RUN_LABEL: project, REPLACES_LABEL: out.volumes[key]}}
    declared_networks = data.get("networks") or {}
    networks: dict[str, Any] = {}
    for key in sorted(used_networks):
        declared = declared_networks.get(key) or {}
        fresh: dict[str, Any] = {"labels": {RUN_LABEL: project}}
        if declared.get("internal"):
            fresh["internal"] = True
        networks[key] = fresh

    model: dict[str, Any] = {"services": services}
    if volumes:
        model["volumes"] = volumes
    if networks:
        model["networks"] = networks
    for key in _TOP_LEVEL_KEPT:
        if data.get(key):
            model[key] = data[key]
    out.model = model
    return out


def _dir_or_absent(path: str) -> bool:
    return os.path.isdir(path) or not os.path.lexists(path)


def _refuse_containers_volumes(service: str, entries: Sequence[Any]) -> None:
    """``volumes_from: [container:NAME]`` would give the run a container's volumes: the user's data."""
    for entry in entries:
        if str(entry).startswith("container:"):
            raise ConfigError(
                f"service {service!r}: volumes_from {entry} shares the volumes of a container outside the "
                "test run, which the tests could change: name a service of the compose file instead "
                "(volumes_from: [SERVICE]), or pass --keep-mounts to share them anyway"
            )


@dataclass
class _Mounts:
    """What becomes of each service's mounts (see the module's doc)."""

    contexts: Sequence[Path]
    keep: bool
    is_dir: Callable[[str], bool]
    taken: set[str]  # volume keys in use: the user's, and the run's own so far
    out: Isolation

    def of(self, service: str, mounts: Sequence[Any], built: bool) -> list[Any]:
        kept = []
        for mount in mounts:
            # compose's model has the long syntax only; keep what it is not, and all with keep_mounts
            if not isinstance(mount, dict) or mount.get("type") != "bind" or self.keep:
                kept.append(mount)
                continue
            source = str(mount.get("source") or "")
            if built and overlaps(source, self.contexts):
                self.out.dropped_mounts.setdefault(service, []).append(source)
            elif mount.get("read_only"):
                kept.append(mount)  # nothing can be written through it
            elif not self.is_dir(source):
                self.out.read_only_mounts.setdefault(service, []).append(source)
                kept.append({**mount, "read_only": True})
            else:
                self.out.replaced_mounts.setdefault(service, []).append(source)
                kept.append(self._volume(service, mount, source))
        return kept

    def _volume(self, service: str, mount: Mapping[str, Any], source: str) -> dict[str, Any]:
        """A fresh volume of the run in place of a bind mount of ``source``."""
        base = BIND_VOLUME_PREFIX + re.sub(r"[^a-zA-Z0-9_.-]+", "-", service)
        key, n = base, 1
        while key in self.taken:
            n += 1
            key = f"{base}-{n}"
        self.taken.add(key)
        self.out.bind_volumes[key] = source
        rest = {k: v for k, v in mount.items() if k not in ("type", "source", "bind")}
        return {"type": "volume", "source": key, **rest, "volume": {}}


@contextlib.contextmanager
def compose_project(model: Mapping[str, Any], project: str) -> Iterator[Compose]:
    """A compose project of the model alone, written to a file of its own (JSON is YAML), under the
    name ``project``; the file goes when the block ends."""
    with tempfile.TemporaryDirectory(prefix="stagecache-run-") as tmp:
        path = Path(tmp) / "compose.json"
        path.write_text(json.dumps(model, indent=1, sort_keys=True))
        yield Compose((path,), Path(tmp), project)
