"""The Engine's HTTP API on its local Unix socket: the fast path for the few calls a cache hit makes."""

from __future__ import annotations

import json
import os
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import NamedTuple

from . import unixhttp


class EngineAPI(NamedTuple):
    """The Engine's HTTP API on its local Unix socket, for the few calls a cache hit makes.

    Each docker CLI process costs 15-25 ms to start; a request on the socket costs about 1 ms. A hit
    asks the engine three or four questions, so this is most of the difference between a hit that
    costs a retag and one that costs a tenth of a second. Everything else goes through the CLI.
    """

    socket_path: str
    timeout: float = 60.0

    @classmethod
    def detect(cls, env: Mapping[str, str] | None = None) -> EngineAPI | None:
        """The local socket, when the docker CLI would use it too (no other host or context chosen)."""
        env = os.environ if env is None else env
        if env.get("DOCKER_CONTEXT") or env.get("DOCKER_TLS_VERIFY"):
            return None
        host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            return None
        config = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
        try:
            current = json.loads(config.read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            current = None
        if current not in (None, "", "default"):
            return None
        path = host.removeprefix("unix://")
        return cls(path) if os.path.exists(path) else None

    def request(
        self, method: str, path: str, body: Iterable[bytes] | None = None, timeout: float | None = -1.0
    ) -> tuple[int, bytes]:
        """One request; ``timeout=None`` waits as long as the engine works (a large load)."""
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        wait = self.timeout if timeout == -1.0 else timeout
        return unixhttp.request(self.socket_path, method, path, body=body, headers=headers, timeout=wait)

    @staticmethod
    def quote(ref: str) -> str:
        return urllib.parse.quote(ref, safe="/:@")
