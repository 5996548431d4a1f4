"""A Dockerfile as a stage graph, parsed with BuildKit's own grammar.

The ``dockerfile`` package wraps BuildKit's Go parser, so line continuations, the ``escape`` directive,
JSON and shell forms and heredocs are read exactly as the engine reads them. This module adds what the
parser leaves to the builder: stages, the global ``ARG`` scope that ``FROM`` lines see (words read as
BuildKit reads them: :mod:`stagecache.key.words`), and which stages a target reaches through ``FROM``,
``COPY --from``, ``RUN --mount=from=`` and the ``ONBUILD`` triggers of a base stage. One instruction
(its checks, its ``ARG`` and ``--mount`` fields) is :mod:`stagecache.key.instructions`'; what each
instruction of a stage sees (its variables) is :mod:`stagecache.key.scope`'s.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import dockerfile as _grammar

from ..errors import DockerfileError
from .instructions import Instruction as Instruction
from .instructions import instruction_of, validate
from .instructions import parse_arg as parse_arg
from .instructions import parse_mounts as parse_mounts
from .words import Frontend, Word, WordError, csv_fields, process_word

if TYPE_CHECKING:
    from .scope import Scope


class Stage:
    """One ``FROM`` and the instructions after it. ``name`` is lower-cased, as BuildKit compares them;
    ``base`` is the FROM reference as written (:meth:`Dockerfile.base_ref` reads it)."""

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

    def triggers(self, path: str) -> list[Instruction]:
        """The stage's own ``ONBUILD`` instructions as BuildKit runs them in a stage built ``FROM`` it:
        the text after ``ONBUILD`` (heredocs appended) parsed again, with the default escape character."""
        out = []
        for ins in self.instructions:
            if ins.cmd != "ONBUILD":
                continue
            text = re.sub(r"(?i)^\s*ONBUILD\s*", "", ins.original)
            text += "".join(f"\n{content}{name}" for name, content in ins.heredocs)
            try:
                commands = _grammar.parse_string(text + "\n")
            except _grammar.GoParseError as exc:
                raise DockerfileError(path, ins.line, f"ONBUILD trigger: {exc}") from None
            if len(commands) != 1:
                raise DockerfileError(path, ins.line, "onbuild trigger should be a single expression")
            out.append(instruction_of(commands[0])._replace(line=ins.line))
        return out


class Dependency(NamedTuple):
    """Something a stage is built from besides its own instructions."""

    kind: str  # "stage" or "image"
    ref: str  # stage label, or an image reference
    line: int


def _platform_args(target: str, build: str) -> list[tuple[str, str]]:
    """BuildKit's automatic platform ARGs, in the global scope (a stage sees them once it declares them)."""
    out = []
    for prefix, value in (("BUILD", build), ("TARGET", target)):
        os_, _, rest = value.partition("/")
        arch, _, variant = rest.partition("/")
        out += [(f"{prefix}PLATFORM", value), (f"{prefix}OS", os_), (f"{prefix}ARCH", arch),
                (f"{prefix}VARIANT", variant)]  # fmt: skip
    return out


class Dockerfile:
    """A parsed Dockerfile. ``path`` is as the user named it, for messages; ``directives`` are the parser
    directives at the top (``# syntax=…``, ``# escape=…``).

    :meth:`configure` says what BuildKit knows besides the file: the platforms (for the automatic
    ``TARGETARCH`` and the like), the environment of external base images, and the engine's frontend.
    """

    def __init__(self, path: str, directives: dict[str, str]) -> None:
        self.path = path
        self.directives = directives
        escape = directives.get("escape", "\\")
        self.escape = escape if escape in ("\\", "`") else "\\"
        self.global_args: list[tuple[str, str | None]] = []  # ARG before the first FROM: (name, default)
        self.global_arg_lines: list[Instruction] = []
        self.stages: list[Stage] = []
        self.platform: str | None = None  # the target platform, e.g. linux/amd64 (None: not known)
        self.build_platform: str | None = None
        self.image_env: Callable[[str], Sequence[str] | None] = lambda ref: None  # None: not known
        self.image_onbuild: Callable[[str], bool] = lambda ref: False
        self.frontend = Frontend()

    def configure(
        self,
        *,
        platform: str | None = None,
        build_platform: str | None = None,
        image_env: Callable[[str], Sequence[str] | None] | None = None,
        image_onbuild: Callable[[str], bool] | None = None,
        frontend: Frontend | None = None,
    ) -> Dockerfile:
        self.platform = platform
        self.build_platform = build_platform or platform
        if image_env is not None:
            self.image_env = image_env
        if image_onbuild is not None:
            self.image_onbuild = image_onbuild
        if frontend is not None:
            self.frontend = frontend
        return self

    def read(self, text: str, env: Mapping[str, str], line: int | None, what: str) -> Word:
        """``text`` read as BuildKit reads it against ``env``; a word it cannot read is an error here."""
        try:
            return process_word(text, env, self.escape, self.frontend.lexer)
        except WordError as exc:
            raise DockerfileError(self.path, line, f"{what} {text!r}: {exc}") from None

    def word(self, text: str, env: Mapping[str, str], line: int | None, what: str) -> str:
        return self.read(text, env, line, what).text

    # --- lookup ---------------------------------------------------------------------------------------
    def stage(self, ref: str) -> Stage | None:
        """A stage by name (case-insensitive) or index, as ``--target`` and ``--from`` name it."""
        lowered = ref.lower()
        for stage in self.stages:
            if stage.name == lowered:
                return stage
        if re.fullmatch(r"[+-]?\d+", ref):  # Go's strconv.Atoi
            index = int(ref)
            return self.stages[index] if 0 <= index < len(self.stages) else None
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
        """What ``stage`` is built on: its base, every ``--from`` of COPY and RUN mounts, and those of
        the ONBUILD triggers of its base stage (they run at the start of this one)."""
        deps = [self._base_dependency(stage, build_args)]
        base = self.base_stage(stage, build_args)
        triggers = base.triggers(self.path) if base is not None else []
        for ins in [*triggers, *stage.instructions]:
            for flag, ref in self.from_refs(ins):
                deps.append(self._from_dependency(ref, stage, ins, flag))
        return deps

    def from_refs(self, ins: Instruction) -> list[tuple[str, str]]:
        """``(flag, reference)`` of each ``--from`` an instruction names, as BuildKit takes them: the
        word as the parser gives it, never expanded (BuildKit refuses a variable there)."""
        refs: list[tuple[str, str]] = []
        if ins.cmd in ("COPY", "ADD") and ins.flag("from") is not None:
            refs.append(("--from", ins.flag("from") or ""))
        if ins.cmd == "RUN":
            for spec in ins.flag_values("mount"):
                try:
                    fields = csv_fields(spec)
                except WordError as exc:
                    raise DockerfileError(self.path, ins.line, f"RUN --mount={spec}: {exc}") from None
                for field in fields:
                    key, eq, value = field.partition("=")
                    if eq and key.lower() == "from":
                        refs.append(("--mount from", value))
        for flag, ref in refs:
            if re.search(r"\$.", ref):
                raise DockerfileError(
                    self.path,
                    ins.line,
                    f"{ins.cmd} {flag}={ref}: BuildKit does not expand variables "
                    "there; name a stage `FROM <image> AS <name>` and use that name",
                )
        return refs

    def base_ref(self, stage: Stage, build_args: Mapping[str, str]) -> str:
        """The ``FROM`` reference read with the global ARGs (it may name a stage: ``FROM ${BASE}``)."""
        name = self.word(stage.base, self.global_values(build_args), stage.line, "FROM")
        if not name:
            raise DockerfileError(self.path, stage.line, f"base name ({stage.base}) should not be blank")
        return name

    def base_stage(self, stage: Stage, build_args: Mapping[str, str]) -> Stage | None:
        """The earlier stage ``stage`` is built FROM, if it is one (BuildKit matches the exact name)."""
        ref = self.base_ref(stage, build_args)
        for found in self.stages[: stage.index]:
            if found.name == ref:
                return found
        return None

    def _base_dependency(self, stage: Stage, build_args: Mapping[str, str]) -> Dependency:
        base = self.base_stage(stage, build_args)
        if base is not None:
            return Dependency("stage", base.label, stage.line)
        return Dependency("image", self.base_ref(stage, build_args), stage.line)

    def _from_dependency(self, ref: str, user: Stage, ins: Instruction, flag: str) -> Dependency:
        """A stage a ``--from`` names (by name, or by index), or else an external image."""
        found = self.stage(ref)
        if found is not None and found.index == user.index:
            raise DockerfileError(self.path, ins.line, f"stage {user.label!r} cannot copy from itself")
        if found is not None:
            return Dependency("stage", found.label, ins.line)
        if re.fullmatch(r"[+-]?\d+", ref):
            raise DockerfileError(
                self.path,
                ins.line,
                f"{ins.cmd} {flag}={ref}: invalid stage index {ref} "
                f"(the Dockerfile has {len(self.stages)} stages)",
            )
        return Dependency("image", ref, ins.line)

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
        """The global scope as ``FROM`` lines see it (BuildKit's meta args): the automatic platform ARGs,
        then each global ARG: its build arg, else its default read against the ones before it, else
        declared without a value (then it reads as empty)."""
        return {name: value or "" for name, value in self.meta_args(build_args)}

    def meta_args(self, build_args: Mapping[str, str]) -> list[tuple[str, str | None]]:
        meta: list[tuple[str, str | None]] = []
        if self.platform:
            for name, auto in _platform_args(self.platform, self.build_platform or self.platform):
                meta.append((name, build_args.get(name, auto)))
        for name, default in self.global_args:
            value: str | None
            if name in build_args:
                value = build_args[name]
            elif default is not None:
                try:  # BuildKit ignores an error here: the value is then empty
                    value = process_word(
                        default, {k: v or "" for k, v in meta}, self.escape, self.frontend.lexer
                    ).text
                except WordError:
                    value = ""
            else:
                value = None
            meta.append((name, value))
        return meta

    def scopes(self, stage: Stage, build_args: Mapping[str, str]) -> list[tuple[Instruction, Scope]]:
        """Each instruction of ``stage`` (the base stage's ONBUILD triggers first) with the variables in
        force where it stands (:mod:`stagecache.key.scope`)."""
        from .scope import stage_scopes  # scope builds on this module

        return stage_scopes(self, stage, build_args)

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
        ins = instruction_of(cmd)
        validate(ins, path)
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
