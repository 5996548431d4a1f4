"""One Dockerfile instruction as BuildKit's grammar gives it, checked as BuildKit's frontend checks it
before building anything (the instruction is known, has its arguments), and the fields of its flags and
arguments read as written: ``ARG`` names and defaults, ``RUN --mount`` fields. Reading them as BuildKit
reads them, against the variables in force, is :mod:`stagecache.key.scope`'s.
"""

from __future__ import annotations

from typing import NamedTuple

import dockerfile as _grammar

from ..errors import DockerfileError
from .words import WordError, csv_fields

# Instructions BuildKit's Dockerfile frontend accepts.
KNOWN_INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
        "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
)  # fmt: skip


class Instruction(NamedTuple):
    """One instruction as the grammar gives it (comments and continuations already resolved).

    ``sub`` is the instruction an ``ONBUILD`` holds (``ONBUILD COPY a /a``: cmd ONBUILD, sub COPY) and
    ``original`` its text as written, which BuildKit stores and parses again when the trigger runs."""

    cmd: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json_form: bool
    line: int
    heredocs: tuple[tuple[str, str], ...] = ()  # (name, content)
    sub: str | None = None
    original: str = ""

    def flag(self, name: str) -> str | None:
        """The value of ``--name=value`` (the last one wins), or None."""
        found = None
        for item in self.flags:
            key, _, value = item.lstrip("-").partition("=")
            if key == name:
                found = value
        return found

    def flag_values(self, name: str) -> list[str]:
        return [item.partition("=")[2] for item in self.flags if item.lstrip("-").partition("=")[0] == name]

    def normalised(self) -> list[object]:
        """What an instruction contributes to a key: no line numbers, no comments, no spacing of flags."""
        return [self.cmd, list(self.flags), list(self.args), self.json_form, [list(h) for h in self.heredocs]]


def instruction_of(cmd: _grammar.Command) -> Instruction:
    """An instruction of the grammar's parse, its command and sub-command upper-cased."""
    return Instruction(
        cmd=cmd.cmd.upper(),
        flags=tuple(cmd.flags),
        args=tuple(cmd.value),
        json_form=bool(cmd.json),
        line=int(cmd.start_line),
        heredocs=tuple((h.name, h.content) for h in cmd.heredocs),
        sub=cmd.sub_cmd.upper() if cmd.sub_cmd else None,
        original=cmd.original,
    )


def validate(ins: Instruction, path: str) -> None:
    """What BuildKit refuses in one instruction before it reads the rest: an unknown instruction, a
    COPY or ADD without a destination, a FROM, ARG, WORKDIR or USER without an argument."""
    if ins.cmd not in KNOWN_INSTRUCTIONS:
        raise DockerfileError(path, ins.line, f"unknown instruction {ins.cmd}")
    if ins.cmd in ("COPY", "ADD") and len(ins.args) < 2:
        raise DockerfileError(path, ins.line, f"{ins.cmd} needs at least a source and a destination")
    if ins.cmd in ("FROM", "ARG", "WORKDIR", "USER") and not any(a.strip() for a in ins.args):
        raise DockerfileError(path, ins.line, f"{ins.cmd} needs an argument")


def parse_arg(ins: Instruction) -> list[tuple[str, str | None]]:
    """``ARG A B=1`` -> [("A", None), ("B", "1")]: names and defaults as written (quotes and all)."""
    out: list[tuple[str, str | None]] = []
    for item in ins.args:
        name, eq, default = item.partition("=")
        out.append((name, default if eq else None))
    return out


def parse_mounts(ins: Instruction) -> list[dict[str, str]]:
    """``RUN --mount=type=bind,source=x,from=y`` -> [{"type": "bind", "source": "x", "from": "y"}], the
    values as written (:func:`stagecache.key.scope.read_mounts` reads them as BuildKit does)."""
    mounts = []
    for spec in ins.flag_values("mount"):
        fields: dict[str, str] = {}
        try:
            parts = csv_fields(spec)
        except WordError:
            parts = spec.split(",")
        for part in parts:
            key, eq, value = part.partition("=")
            fields[_MOUNT_KEYS.get(key.lower(), key.lower())] = value if eq else "true"
        fields.setdefault("type", "bind")
        mounts.append(fields)
    return mounts


_MOUNT_KEYS = {"src": "source", "dst": "target", "destination": "target"}
