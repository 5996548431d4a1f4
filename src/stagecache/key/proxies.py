"""The build args the docker CLI adds on its own: the proxies of its ``config.json``.

``docker buildx build`` (buildx 0.13, ``store/storeutil.GetProxyConfig``) takes ``proxies[<daemon
host>]``, else ``proxies["default"]``, and passes ``HTTP_PROXY``, ``HTTPS_PROXY``, ``NO_PROXY`` and
``FTP_PROXY`` as build args, each one the command line does not give itself. BuildKit hands them to
every ``RUN`` without an ``ARG`` (``proxyEnvFromBuildArgs``), so they can change the image: they count.
``ALL_PROXY`` counts too (the CLI's own ``ParseProxyConfig`` passes it to containers, and a later
buildx may pass it to builds). Where the daemon host cannot be told, every host's entry counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

_FIELDS = {"httpProxy": "HTTP_PROXY", "httpsProxy": "HTTPS_PROXY", "noProxy": "NO_PROXY",
           "ftpProxy": "FTP_PROXY", "allProxy": "ALL_PROXY"}  # fmt: skip
DEFAULT_HOST = "unix:///var/run/docker.sock"


def proxy_args(config: Mapping[str, Any], host: str | None) -> dict[str, str]:
    """The build args for ``host`` (None: not known, then every entry's, named per host but the
    default's)."""
    proxies = config.get("proxies")
    if not isinstance(proxies, dict):
        return {}
    if host is not None:
        entry = proxies.get(host, proxies.get("default"))
        return _entry(entry)
    out: dict[str, str] = {}
    for name, entry in sorted(proxies.items()):
        for arg, value in _entry(entry).items():
            out[arg if name == "default" else f"{arg}@{name}"] = value
    return out


def _entry(entry: object) -> dict[str, str]:
    if not isinstance(entry, dict):
        return {}
    return {
        arg: entry[field]
        for field, arg in _FIELDS.items()
        if isinstance(entry.get(field), str) and entry[field]
    }


def daemon_host(environ: Mapping[str, str], config: Mapping[str, Any], config_dir: Path) -> str | None:
    """The daemon host the docker CLI talks to (its ``DaemonHost()``), or None when it cannot be told:
    ``DOCKER_CONTEXT``, else ``DOCKER_HOST``, else the config's ``currentContext``, else the default."""
    name = environ.get("DOCKER_CONTEXT") or ("default" if environ.get("DOCKER_HOST") else None)
    name = name or config.get("currentContext") or "default"
    if name == "default":
        return environ.get("DOCKER_HOST") or DEFAULT_HOST
    meta = config_dir / "contexts" / "meta" / hashlib.sha256(str(name).encode()).hexdigest() / "meta.json"
    try:
        host = json.loads(meta.read_text())["Endpoints"]["docker"]["Host"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return host if isinstance(host, str) else None


def cli_build_args(environ: Mapping[str, str], home: Path) -> dict[str, str]:
    """The proxy build args of the docker CLI's config (``DOCKER_CONFIG``, else ``~/.docker``)."""
    config_dir = Path(environ.get("DOCKER_CONFIG") or home / ".docker")
    try:
        config = json.loads((config_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(config, dict) or not config.get("proxies"):
        return {}
    return proxy_args(config, daemon_host(environ, config, config_dir))
