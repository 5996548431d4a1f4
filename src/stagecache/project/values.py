"""The values people read and write: sizes, durations, NAME=VALUE, and dates (one format: UTC ISO 8601)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping, Sequence

from ..errors import ConfigError


def parse_size(value: object, where: str) -> int:
    """``500MB``, ``10GiB`` or a number of bytes; it must come out positive."""
    if isinstance(value, int) and not isinstance(value, bool):
        size = value
    elif isinstance(value, str) and (
        match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)\s*", value.lower())
    ):
        number, unit, suffix = float(match.group(1)), match.group(2), match.group(3)
        base = 1024 if suffix.startswith("i") else 1000
        size = int(number * base ** "_kmgt".index(unit or "_"))
    else:
        raise ConfigError(f"{where}: cannot read size {value!r}: write e.g. 500MB or 10GiB")
    if size <= 0:
        raise ConfigError(f"{where}: a size must be positive, not {value!r}: write e.g. 500MB or 10GiB")
    return size


def parse_duration(text: str, where: str = "--older-than") -> float:
    """``30m``, ``12h``, ``7d``, ``2w`` or plain seconds, as seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ConfigError(f"{where} {text!r}: write e.g. 30m, 12h, 7d or 2w")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def parse_assignments(
    items: Sequence[str], option: str, env: Mapping[str, str] | None = None
) -> dict[str, str | None]:
    """``NAME=VALUE`` sets a value; a bare ``NAME`` takes the caller's environment value, as docker
    reads ``--build-arg`` and ``-e`` (None where the variable is not set: ``-e`` passes it as unset,
    ``--build-arg`` skips it)."""
    env = os.environ if env is None else env
    out: dict[str, str | None] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name:
            raise ConfigError(
                f"{option} {item!r}: write NAME=VALUE (or NAME to take it from the environment)"
            )
        out[name] = value if eq else env.get(name)
    return out


def build_args(items: Sequence[str], env: Mapping[str, str] | None = None) -> dict[str, str]:
    """``--build-arg`` values; a bare NAME that is not set is skipped, as ``docker build`` skips it."""
    return {k: v for k, v in parse_assignments(items, "--build-arg", env).items() if v is not None}


DATE_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
RFC3339 = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.\d+)?(Z|[+-]\d\d:\d\d)?"


def iso(ts: float) -> str:
    """Seconds since the epoch as ``YYYY-MM-DDTHH:MM:SSZ``."""
    return time.strftime(DATE_FORMAT, time.gmtime(ts))


def iso_text(text: str) -> str:
    """An RFC 3339 time as the engine writes it (``2024-05-01T10:11:12.123456789+02:00``) in the one
    format: UTC, to the second. Text that is not one is returned as it is."""
    import calendar  # only `images prune` reads the engine's times

    match = re.fullmatch(RFC3339, text.strip(), re.IGNORECASE)
    if not match:
        return text
    ts = calendar.timegm(time.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S"))
    zone = (match.group(2) or "Z").upper()
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        ts -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return iso(ts)
