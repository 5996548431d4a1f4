"""Secret values kept out of what stagecache prints and writes.

**The redaction key.** A secret-looking build arg (``[tool.stagecache] secret-args``) counts in the
key, and is shown and recorded, through its HMAC-SHA256 under a key of the store's own: 32 random
bytes in ``<store>/v1/redaction.key`` (mode 0600), made the first time a secret arg needs one. The same
value in the same store gives the same digest (``key --why`` can say that ``API_TOKEN`` changed), but
neither a ``<redacted …>`` digest nor a key confirms a guessed value to whoever lacks that file. When the
store's directory cannot be written and has no key yet, the key is ``<cache dir>/redaction.key``.

**Masking.** Every command line stagecache logs (``-v``) or puts in an error message goes through
:func:`argv`: a ``NAME=VALUE`` word whose name looks secret shows ``NAME=<redacted>``, a URL's
credentials show ``https://<redacted>@host``. And every
text it logs goes through :func:`text`, which masks the values of the secret build args this process
was given (:func:`remember`).

A leaf module: imported by ``trace`` and ``process`` on every run, it imports nothing of stagecache's
at start-up.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import re
import stat
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

KEY_FILE = "redaction.key"
KEY_BYTES = 32
SHOWN = "<redacted>"
_SHORTEST = 4  # shorter values are not masked in free text: every "1" of a log would go

_values: set[str] = set()
_patterns: tuple[str, ...] | None = None  # None: the default secret-args patterns


# --- masking -------------------------------------------------------------------------------------------
def use_patterns(patterns: Iterable[str]) -> None:
    """The names that look secret: the project's ``secret-args`` patterns."""
    global _patterns
    _patterns = tuple(patterns)


def remember(value: str) -> None:
    """A secret value this process holds: masked wherever :func:`text` sees it."""
    if len(value) >= _SHORTEST:
        _values.add(value)


def looks_secret(name: str) -> bool:
    patterns = _patterns
    if patterns is None:
        from .key.spec import DEFAULT_SECRET_PATTERNS  # the patterns live with the key's rules

        patterns = DEFAULT_SECRET_PATTERNS
    return any(fnmatch.fnmatchcase(name.upper(), p.upper()) for p in patterns)


def text(message: str) -> str:
    """``message`` with every remembered secret value replaced by ``<redacted>``."""
    for value in sorted(_values, key=len, reverse=True):
        if value in message:
            message = message.replace(value, SHOWN)
    return message


def argv(words: Sequence[str], env: Mapping[str, str] | None = None) -> list[str]:
    """A command line as it may be shown: ``NAME=VALUE`` words (also ``--flag=NAME=VALUE``) with a
    secret-looking name show ``NAME=<redacted>``; ``env`` (what the command gets besides the caller's
    environment) comes first, by name only: ``NAME=…``."""
    shown = [f"{name}=…" for name in env or {}]
    for i, word in enumerate(words):
        shown.append(_word(word, by_name=i == 0 or words[i - 1] not in _NOT_ASSIGNMENTS))
    return shown


# Options whose NAME=VALUE is no variable: `--label org.stagecache.key=sha256:…` is not a secret *KEY*
_NOT_ASSIGNMENTS = ("--label", "-l", "--filter", "-f", "--format")


def _word(word: str, by_name: bool = True) -> str:
    prefix = ""
    if word.startswith("-") and "=" in word:  # --build-arg=NAME=VALUE
        flag, _, word = word.partition("=")
        prefix = flag + "="
        by_name = flag not in _NOT_ASSIGNMENTS
    name, eq, value = word.partition("=")
    if by_name and eq and value and looks_secret(name):
        return f"{prefix}{name}={SHOWN}"
    return text(prefix + _CREDENTIALS.sub(rf"\1{SHOWN}@", word))


_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")  # key.spec.URL_CREDENTIALS


# --- the redaction key ---------------------------------------------------------------------------------
class RedactionKey:
    """The HMAC key secret build args are digested under, read or made on first call: the store's
    (``<store>/v1/redaction.key``), else the cache directory's."""

    def __init__(self, store: Path | None, cache: Path) -> None:
        self.places = [p for p in (store / "v1" if store is not None else None, cache) if p is not None]
        self._key: bytes | None = None
        self.path: Path | None = None  # where the key came from

    def __call__(self) -> bytes:
        if self._key is None:
            failures = []
            for place in self.places:
                try:
                    self._key = read_or_make(place / KEY_FILE)
                except OSError as exc:
                    failures.append(f"{place / KEY_FILE}: {exc.strerror or exc}")
                    continue
                self.path = place / KEY_FILE
                break
            else:
                from .errors import ConfigError

                raise ConfigError(
                    "no redaction key for secret build args can be read or made ("
                    + "; ".join(failures)
                    + "): pass --store DIR with a writable directory"
                )
        return self._key


def read_or_make(path: Path) -> bytes:
    """The key in ``path``, made first if there is none: written to a file of its own created with
    ``O_EXCL`` (mode 0600), then linked into place (a link never replaces a file), so that of
    concurrent makers one wins and every reader sees a whole key. A symlink or anything but a regular
    file of one key is refused (ConfigError)."""
    try:
        return _read(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(6).hex()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(KEY_BYTES).hex().encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process made it first: theirs is the key
        except OSError:  # a file system without hard links: create the file itself, exclusively
            with contextlib.suppress(FileExistsError):
                _make_in_place(path)
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return _read(path)


def _make_in_place(path: Path) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(os.urandom(KEY_BYTES).hex().encode() + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _read(path: Path, tries: int = 20) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            _refuse(path, "a symbolic link")
        raise
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            _refuse(path, "not a regular file")
        data = fh.read(4 * KEY_BYTES)
    try:
        key = bytes.fromhex(data.decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        if not data and tries:  # a maker on a file system without links is still writing it
            import time

            time.sleep(0.05)
            return _read(path, tries - 1)
        _refuse(path, f"not {KEY_BYTES} bytes in hex")
    return key


def _refuse(path: Path, why: str) -> None:
    from .errors import ConfigError

    raise ConfigError(
        f"{path}: not a redaction key ({why}); remove it and stagecache makes a new one (the keys of "
        "targets with secret build args change once)"
    )
