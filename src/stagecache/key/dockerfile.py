"""A Dockerfile as a stage graph, parsed with BuildKit's own grammar.

The ``dockerfile`` package wraps BuildKit's Go parser, so line continuations, the ``escape`` directive,
JSON and shell forms and heredocs are read exactly as the engine reads them. This module adds what the
parser leaves to the builder: stages, ``ARG`` scoping and substitution, and which stages a target
reaches through ``FROM``, ``COPY --from`` and ``RUN --mount=from=``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import dockerfile as _grammar

from ..errors import DockerfileError

# Instructions BuildKit's Dockerfile frontend accepts.
KNOWN_INSTRUCTIONS = frozenset(
    {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
        "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
)  # fmt: skip


class Instruction(NamedTuple):
    """One instruction as the grammar gives it (comments and continuations already resolved)."""

    cmd: str
    flags: tuple[str, ...]
    args: tuple[str, ...]
    json_form: bool
    line: int
    heredocs: tuple[tuple[str, str], ...] = ()  # (name, content)

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


class Stage:
    """One ``FROM`` and the instructions after it. ``name`` is lower-cased, as BuildKit compares them;
    ``base`` is the FROM reference with global ARGs substituted."""

    def __init__(self, index: int, name: str | None, base: str, platform: str | None, line: int) -> None:
        self.index = index
        self.name = name
        self.base = base
        self.platform = platform
        self.line = line
        self.instructions: list[Instruction] = []

    def __repr__(self) -> str:
        return f"Stage({self.label!r}, base={self.base!r}, line={self.line})"

    @property
    def label(self) -> str:
        return self.name if self.name is not None else str(self.index)


class Dependency(NamedTuple):
    """Something a stage is built from besides its own instructions."""

    kind: str  # "stage" or "image"
    ref: str  # stage label, or an image reference
    line: int


class Dockerfile:
    """A parsed Dockerfile. ``path`` is as the user named it, for messages; ``directives`` are the parser
    directives at the top (``# syntax=…``, ``# escape=…``)."""

    def __init__(self, path: str, directives: dict[str, str]) -> None:
        self.path = path
        self.directives = directives
        self.global_args: list[tuple[str, str | None]] = []  # ARG before the first FROM: (name, default)
        self.global_arg_lines: list[Instruction] = []
        self.stages: list[Stage] = []

    # --- lookup ---------------------------------------------------------------------------------------
    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or index, as ``--target``/``FROM``/``--from`` name it."""
        lowered = ref.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if ref.isdigit() and int(ref) < len(self.stages):
            return self.stages[int(ref)]
        return None

    def target(self, name: str | None) -> Stage:
        if not self.stages:
            raise DockerfileError(
                self.path, None, "no FROM instruction: a Dockerfile needs at least one stage"
            )
        if name is None:
            return self.stages[-1]
        found = self.stage(name)
        if found is None or (name.isdigit() and found.name is not None):
            names = ", ".join(s.name for s in self.stages if s.name) or "(no named stages)"
            raise DockerfileError(self.path, None, f"no stage named {name!r}; stages: {names}")
        return found

    # --- the graph ------------------------------------------------------------------------------------
    def dependencies(self, stage: Stage, build_args: Mapping[str, str]) -> list[Dependency]:
        """What ``stage`` is built on: its base, and every ``--from`` of COPY and RUN mounts."""
        deps = [self._classify(self.base_ref(stage, build_args), stage, stage.line, base=True)]
        for ins, values in self.scopes(stage, build_args):
            refs: list[str] = []
            if ins.cmd in ("COPY", "ADD") and ins.flag("from") is not None:
                refs.append(ins.flag("from") or "")
            if ins.cmd == "RUN":
                refs += [m["from"] for m in parse_mounts(ins) if m.get("from")]
            for ref in refs:
                deps.append(self._classify(substitute(ref, values), stage, ins.line, base=False))
        return deps

    def base_ref(self, stage: Stage, build_args: Mapping[str, str]) -> str:
        """The ``FROM`` reference with the global ARGs substituted (it may name a stage: ``FROM ${BASE}``)."""
        return substitute(stage.base, self.global_values(build_args))

    def base_stage(self, stage: Stage, build_args: Mapping[str, str]) -> Stage | None:
        found = self.stage(self.base_ref(stage, build_args))
        return found if found is not None and found.index < stage.index else None

    def _classify(self, ref: str, user: Stage, line: int, *, base: bool) -> Dependency:
        """A stage this one uses, or an external image. FROM sees earlier stages only; --from sees all."""
        found = self.stage(ref)
        if found is not None and base and found.index >= user.index:
            found = None  # a FROM naming a later stage means an image of that name, as Docker reads it
        if found is not None and found.index == user.index:
            raise DockerfileError(self.path, line, f"stage {user.label!r} cannot copy from itself")
        if found is not None:
            return Dependency("stage", found.label, line)
        return Dependency("image", ref, line)

    def reached(self, target: Stage, build_args: Mapping[str, str]) -> list[Stage]:
        """The stages ``target`` is built from, itself included, in file order."""
        seen: set[int] = set()
        visiting: list[int] = []

        def visit(stage: Stage) -> None:
            if stage.index in visiting:
                chain = " -> ".join(self.stages[i].label for i in [*visiting, stage.index])
                raise DockerfileError(self.path, stage.line, f"circular stage dependency: {chain}")
            if stage.index in seen:
                return
            visiting.append(stage.index)
            for dep in self.dependencies(stage, build_args):
                if dep.kind == "stage":
                    found = self.stage(dep.ref)
                    assert found is not None
                    visit(found)
            visiting.pop()
            seen.add(stage.index)

        visit(target)
        return [s for s in self.stages if s.index in seen]

    # --- ARG scoping ------------------------------------------------------------------------------------
    def global_values(self, build_args: Mapping[str, str]) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, default in self.global_args:
            if name in build_args:
                values[name] = build_args[name]
            elif default is not None:
                values[name] = substitute(default, values)
        return values

    def scopes(self, stage: Stage, build_args: Mapping[str, str]) -> list[tuple[Instruction, dict[str, str]]]:
        """Each instruction of ``stage`` with the variables in force where it stands.

        That is the ENV a base stage passes on, then the stage's own ARGs and ENVs up to that line, as
        BuildKit scopes them: a global ARG is visible inside a stage only once the stage declares it again.
        """
        return self._walk_scope(stage, build_args)[0]

    def _walk_scope(
        self, stage: Stage, build_args: Mapping[str, str]
    ) -> tuple[list[tuple[Instruction, dict[str, str]]], dict[str, str], set[str]]:
        """(instructions with their scopes, the values at the end, the names that are ENV)."""
        base = self.base_stage(stage, build_args)
        if base is None:
            values: dict[str, str] = {}
            env_names: set[str] = set()
        else:  # ENV passes on to a child stage; ARG does not
            _, base_values, env_names = self._walk_scope(base, build_args)
            values = {name: base_values[name] for name in env_names if name in base_values}
        globals_ = self.global_values(build_args)
        out = []
        for ins in stage.instructions:
            out.append((ins, dict(values)))
            if ins.cmd == "ARG":
                for name, default in parse_arg(ins):
                    if name in build_args:
                        values[name] = build_args[name]
                    elif default is not None:
                        values[name] = substitute(default, values)
                    elif name in globals_:
                        values[name] = globals_[name]
            elif ins.cmd == "ENV":
                for name, value in zip(ins.args[0::2], ins.args[1::2], strict=False):
                    values[name] = substitute(value, values)
                    env_names.add(name)
        return out, values, env_names

    def declared_args(self, stages: list[Stage]) -> set[str]:
        """Names of the ARGs the given stages declare, plus the global ARGs."""
        names = {name for name, _ in self.global_args}
        for stage in stages:
            for ins in stage.instructions:
                if ins.cmd == "ARG":
                    names.update(name for name, _ in parse_arg(ins))
        return names


# --- parsing ----------------------------------------------------------------------------------------------
def load(path: Path, display: str | None = None) -> Dockerfile:
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DockerfileError(shown, None, "no such Dockerfile: check `dockerfile:` or -f/--file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DockerfileError(shown, None, f"cannot read: {exc}") from None
    return parse(text, shown)


def parse(text: str, path: str = "Dockerfile") -> Dockerfile:
    try:
        commands = _grammar.parse_string(text)
    except _grammar.GoParseError as exc:
        raise DockerfileError(path, _line_of(str(exc)), f"syntax error: {exc}") from None
    result = Dockerfile(path, _directives(text))
    for cmd in commands:
        ins = Instruction(
            cmd=cmd.cmd.upper(),
            flags=tuple(cmd.flags),
            args=tuple(cmd.value),
            json_form=bool(cmd.json),
            line=int(cmd.start_line),
            heredocs=tuple((h.name, h.content) for h in cmd.heredocs),
        )
        _validate(ins, path)
        if ins.cmd == "FROM":
            result.stages.append(_new_stage(ins, result, path))
        elif not result.stages:
            if ins.cmd != "ARG":
                raise DockerfileError(
                    path, ins.line, f"{ins.cmd} before the first FROM: only ARG may come first"
                )
            result.global_args.extend(parse_arg(ins))
            result.global_arg_lines.append(ins)
        else:
            result.stages[-1].instructions.append(ins)
    if not result.stages:
        raise DockerfileError(path, None, "no FROM instruction: a Dockerfile needs at least one stage")
    return result


def _directives(text: str) -> dict[str, str]:
    """Parser directives: ``# name=value`` lines at the very top, before any other line."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        match = re.fullmatch(r"#\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*(.*?)\s*", line)
        if not match:
            break
        found[match.group(1).lower()] = match.group(2)
    return found


def _line_of(message: str) -> int | None:
    match = re.search(r"line (\d+)", message)
    return int(match.group(1)) if match else None


def _validate(ins: Instruction, path: str) -> None:
    if ins.cmd not in KNOWN_INSTRUCTIONS:
        raise DockerfileError(path, ins.line, f"unknown instruction {ins.cmd}")
    if ins.cmd in ("COPY", "ADD") and len(ins.args) < 2:
        raise DockerfileError(path, ins.line, f"{ins.cmd} needs at least a source and a destination")
    if ins.cmd in ("FROM", "ARG", "WORKDIR", "USER") and not any(a.strip() for a in ins.args):
        raise DockerfileError(path, ins.line, f"{ins.cmd} needs an argument")


def _new_stage(ins: Instruction, dockerfile: Dockerfile, path: str) -> Stage:
    args = list(ins.args)
    name = None
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not re.fullmatch(r"[a-z][a-z0-9._-]*", name):
            raise DockerfileError(path, ins.line, f"invalid stage name {args[2]!r}")
        if dockerfile.stage(name) is not None:
            raise DockerfileError(path, ins.line, f"duplicate stage name {args[2]!r}")
    elif len(args) != 1:
        raise DockerfileError(path, ins.line, "FROM takes an image and an optional `AS name`")
    return Stage(
        index=len(dockerfile.stages), name=name, base=args[0], platform=ins.flag("platform"), line=ins.line
    )


def parse_arg(ins: Instruction) -> list[tuple[str, str | None]]:
    """``ARG A B=1`` -> [("A", None), ("B", "1")]."""
    out: list[tuple[str, str | None]] = []
    for item in ins.args:
        name, eq, default = item.partition("=")
        out.append((name, _unquote(default) if eq else None))
    return out


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse_mounts(ins: Instruction) -> list[dict[str, str]]:
    """``RUN --mount=type=bind,source=x,from=y`` -> [{"type": "bind", "source": "x", "from": "y"}]."""
    mounts = []
    for spec in ins.flag_values("mount"):
        fields: dict[str, str] = {}
        for part in spec.split(","):
            key, eq, value = part.partition("=")
            key = {"src": "source", "dst": "target", "destination": "target"}.get(key.lower(), key.lower())
            fields[key] = value if eq else "true"
        fields.setdefault("type", "bind")
        mounts.append(fields)
    return mounts


_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_VAR = re.compile(rf"\$(?:\{{(?P<braced>{_NAME})(?:(?P<op>:?[-+])(?P<word>[^}}]*))?\}}|(?P<bare>{_NAME}))")


def substitute(text: str, values: Mapping[str, str]) -> str:
    """Dockerfile variable substitution: ``$X``, ``${X}``, ``${X:-word}``, ``${X:+word}``.

    ``\\$`` stays a literal dollar sign.
    """

    def repl(match: re.Match[str]) -> str:
        start = match.start()
        if start > 0 and text[start - 1] == "\\":
            return match.group(0)
        name = match.group("braced") or match.group("bare")
        value = values.get(name)
        op = match.group("op")
        word = match.group("word") or ""
        if op in (":-", "-"):
            empty = value is None or (op == ":-" and value == "")
            return substitute(word, values) if empty else (value or "")
        if op in (":+", "+"):
            present = value is not None and (op == "+" or value != "")
            return substitute(word, values) if present else ""
        return value or ""

    return _VAR.sub(repl, text).replace("\\$", "$")


def resolvable(text: str, values: Mapping[str, str]) -> bool:
    """Whether :func:`substitute` gives ``text`` exactly as BuildKit would.

    False when ``text`` uses a variable that is not set here (BuildKit may know it: ENV from an
    external base image, an automatic platform ARG) or an expansion this module does not model
    (``${X#pattern}``, ``${X%pattern}``, ``${X/a/b}``, ``${X:?}``).
    """
    for match in _VAR.finditer(text):
        if match.start() > 0 and text[match.start() - 1] == "\\":
            continue
        name = match.group("braced") or match.group("bare")
        if name not in values and match.group("op") not in (":-", "-", ":+", "+"):
            return False
    leftover = _VAR.sub("", text).replace("\\$", "")
    return "$" not in leftover
