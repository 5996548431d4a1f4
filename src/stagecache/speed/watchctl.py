"""The watchers' lifecycle, as ``stagecache watch`` drives it: one watcher per build context.

:mod:`stagecache.speed.watch` knows how to reach, start and stop one watcher by its socket; this
module decides which contexts a project's targets need watched and what is running for this user.
Start and stop yield one result per context as they go, so a caller can report each before a later
one fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..project.settings import Settings, cache_dir
from . import watch

WATCHING = "watching"
ALREADY = "already watched"


def watch_dir() -> Path:
    """Where watchers keep their sockets and logs (the key looks for them there too)."""
    return cache_dir() / "watch"


def contexts(settings: Settings, targets: Sequence[str]) -> list[Path]:
    """The build contexts of the named targets (default: every configured one), each once."""
    return sorted({t.spec.context.resolve() for t in settings.select(targets)})


def running(where: Path | None = None) -> list[dict[str, Any]]:
    """The status of every watcher of this user that answers (``root``, ``pid``, ``started``, …)."""
    return [status for _, status in watch.running(where or watch_dir())]


def stop_all(where: Path | None = None) -> list[dict[str, Any]]:
    """Stop every watcher of this user; the status each had."""
    found = watch.running(where or watch_dir())
    for socket, _ in found:
        watch.stop(socket)
    return [status for _, status in found]


def _socket(where: Path, context: Path) -> str:
    socket = watch.socket_path(where, context)
    if socket is None:
        raise ConfigError(
            f"{where}: too long a path for a Unix socket: set STAGECACHE_CACHE_DIR to a shorter one"
        )
    return socket


def start(contexts: Iterable[Path], where: Path | None = None) -> Iterator[tuple[Path, str]]:
    """Start a watcher for each context that has none: ``(context, WATCHING or ALREADY)`` for each.

    A watcher that does not start is a :class:`ConfigError` with the last thing it said."""
    if not watch.enabled():
        raise ConfigError("STAGECACHE_WATCH turns watchers off: unset it to start one")
    where = where or watch_dir()
    for context in contexts:
        socket = _socket(where, context)
        if watch.ask(socket, "status") is not None:
            yield context, ALREADY
        elif watch.start(context, socket):
            yield context, WATCHING
        else:
            reason = watch.failure(socket) or "it said nothing"
            raise ConfigError(f"{context}: the watcher did not start: {reason}")


def stop(contexts: Iterable[Path], where: Path | None = None) -> Iterator[tuple[Path, bool]]:
    """Stop the watcher of each context: ``(context, whether one was running)`` for each."""
    where = where or watch_dir()
    for context in contexts:
        yield context, watch.stop(_socket(where, context))
