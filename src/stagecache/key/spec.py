"""What a target is built from, as the user configured it, and which build args are secret."""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

DEFAULT_SECRET_PATTERNS = ("*TOKEN*", "*PASSWORD*", "*SECRET*", "*KEY*")


class BuildOptions(NamedTuple):
    """Compose ``build:`` options besides the context, Dockerfile, target, args and labels.

    The first five change what a ``RUN`` step sees (its hosts file, network, ``/dev/shm``, limits and
    what it is allowed to do), so they are in the key (:meth:`keyed`); the others decide how BuildKit
    uses or exports its cache and what it attests, not what the image holds.
    """

    extra_hosts: tuple[str, ...] = ()  # "host=ip", as compose lists them (sorted) (`--add-host`)
    network: str | None = None  # `--network` for RUN steps; None: the default
    shm_size: str | None = None  # bytes (`--shm-size`)
    ulimits: tuple[str, ...] = ()  # "name=soft:hard" (`--ulimit`)
    entitlements: tuple[str, ...] = ()  # `--allow` (`privileged: true` is security.insecure)
    cache_from: tuple[str, ...] = ()
    cache_to: tuple[str, ...] = ()
    no_cache: bool = False
    no_cache_filter: tuple[str, ...] = ()
    provenance: str | None = None
    sbom: str | None = None

    def keyed(self) -> dict[str, object]:
        """The options that can change the image, as they enter the key (only those that are set)."""
        values = {
            "extra_hosts": list(self.extra_hosts),
            "network": self.network,
            "shm_size": self.shm_size,
            "ulimits": list(self.ulimits),
            "entitlements": list(self.entitlements),
        }
        return {name: value for name, value in values.items() if value}


NO_OPTIONS = BuildOptions()


class BuildSecret(NamedTuple):
    """A BuildKit secret (``docker buildx build --secret``), as compose ``build.secrets`` or
    ``[tool.stagecache] secrets`` name it: its id, where the docker CLI reads it (``file`` or ``env``)
    and the path or variable there. stagecache never reads the value itself."""

    id: str
    kind: str  # "file" or "env"
    source: str  # an absolute path, or the name of an environment variable

    def flag(self) -> str:
        """The value of ``--secret``: ``id=ID,src=PATH`` or ``id=ID,env=VARIABLE``."""
        return f"id={self.id},{'src' if self.kind == 'file' else 'env'}={self.source}"


class TargetSpec(NamedTuple):
    """What a target is built from, as the user configured it."""

    name: str
    context: Path
    dockerfile: Path
    stage: str | None = None
    build_args: Mapping[str, str] = MappingProxyType({})
    platform: str | None = None
    labels: Mapping[str, str] = MappingProxyType({})  # compose `build.labels`, set on the image
    options: BuildOptions = NO_OPTIONS  # compose's other `build:` options
    secrets: tuple[BuildSecret, ...] = ()  # BuildKit secrets: their ids and kinds count, never their values


def is_secret(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name.upper(), pattern.upper()) for pattern in patterns)


# A URL with credentials: scheme://user:password@host, scheme://token@host (a proxy, an index URL)
URL_CREDENTIALS = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]+@")


def secret_arg(name: str, value: str, patterns: Iterable[str]) -> bool:
    """Whether a build arg is treated as secret: its name matches ``secret-args``, or its value is a URL
    with credentials (``HTTP_PROXY=http://user:password@proxy:3128``, ``PIP_INDEX_URL=https://tok@…``)."""
    return is_secret(name, patterns) or URL_CREDENTIALS.search(value) is not None


def secret_digest(value: str, salt: bytes) -> str:
    """What a secret build arg's value counts as: HMAC-SHA256 under a store's redaction key, in hex.

    Without the key, neither the digest nor a key computed from it confirms a guessed value offline.
    """
    return hmac.new(salt, value.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def redacted(digest: str) -> str:
    """How a secret build arg is shown and recorded: the first 8 hex digits of its HMAC."""
    return f"<redacted {digest[:8]}>"
