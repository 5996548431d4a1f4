"""What each instruction of a stage sees: BuildKit's variables, in force where the instruction stands.

BuildKit keeps one environment per stage (its LLB state's) and reads every word against it:

* a stage starts with its base's: an external image's ``ENV`` (``PATH`` is set if the image has none),
  or a base stage's environment as it ends, which holds that stage's ``ARG`` values too (checked by
  building: ``FROM base`` sees ``base``'s ``ARG A=a`` in ``COPY ${A}.txt``);
* the ``ONBUILD`` triggers of a base stage run first, as instructions of the new stage;
* ``ARG`` and ``ENV`` read all their words against the environment before the instruction (``ENV A=1
  B=$A`` gives ``B`` the old ``A``), then set them in order. An ``ARG`` takes its build arg, else its
  default, else the global ARG of that name (:meth:`Dockerfile.meta_args`); one with no value at all
  sets nothing.

A :class:`Scope` is ``complete`` unless some variables come from where stagecache cannot look (an
external image it could not inspect, or one whose ONBUILD triggers run first).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

from ..errors import DockerfileError
from . import dockerfile as df
from .words import DEFAULT_PATH, WordError, csv_fields, process_word

_NON_ENV_ARGS = frozenset({"BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"})


class Scope(dict[str, str]):
    """The variables in force at one instruction."""

    complete = True

    def copy(self) -> Scope:
        out = Scope(self)
        out.complete = self.complete
        return out


def stage_scopes(
    dockerfile: df.Dockerfile, stage: df.Stage, build_args: Mapping[str, str]
) -> list[tuple[df.Instruction, Scope]]:
    return _walk(dockerfile, stage, build_args)[0]


def _walk(
    dockerfile: df.Dockerfile, stage: df.Stage, build_args: Mapping[str, str]
) -> tuple[list[tuple[df.Instruction, Scope]], Scope]:
    base = dockerfile.base_stage(stage, build_args)
    instructions = list(stage.instructions)
    if base is not None:
        env = _walk(dockerfile, base, build_args)[1].copy()
        instructions = [*base.triggers(dockerfile.path), *instructions]
    else:
        env = Scope()
        ref = dockerfile.base_ref(stage, build_args)
        if ref.lower() != "scratch":
            image_env = dockerfile.image_env(ref)
            if image_env is None or dockerfile.image_onbuild(ref):
                env.complete = False
            for item in image_env or ():
                name, _, value = item.partition("=")
                env[name] = value
    env.setdefault("PATH", DEFAULT_PATH)
    meta = dockerfile.meta_args(build_args)
    out = []
    for ins in instructions:
        out.append((ins, env.copy()))
        if ins.cmd == "ARG":
            _arg(dockerfile, ins, env, build_args, meta)
        elif ins.cmd == "ENV":
            pairs = [
                (dockerfile.word(k, env, ins.line, "ENV"), dockerfile.word(v, env, ins.line, "ENV"))
                for k, v in zip(ins.args[0::2], ins.args[1::2], strict=False)
            ]
            env.update(pairs)
    return out, env


def _arg(
    dockerfile: df.Dockerfile,
    ins: df.Instruction,
    env: Scope,
    build_args: Mapping[str, str],
    meta: list[tuple[str, str | None]],
) -> None:
    pairs: list[tuple[str, str | None]] = []
    for item in ins.args:
        key, eq, raw = item.partition("=")
        pairs.append(
            (
                dockerfile.word(key, env, ins.line, "ARG"),
                dockerfile.word(raw, env, ins.line, "ARG") if eq else None,
            )
        )
    for name, default in pairs:
        value: str | None = build_args.get(name, default)
        if value is None:
            for meta_name, meta_value in meta:
                if meta_name == name:
                    value = meta_value
        if value is not None and name not in _NON_ENV_ARGS:
            env[name] = value


class Mount(NamedTuple):
    """A ``RUN --mount`` as BuildKit reads it. ``literal`` says that some value reads otherwise where
    mount values are taken literally (BuildKit 0.8) than where they are expanded (0.9 on)."""

    type: str
    source: str | None
    target: str | None
    from_: str | None
    literal: bool


_KEYS = {"src": "source", "dst": "target", "destination": "target"}


def read_mounts(dockerfile: df.Dockerfile, ins: df.Instruction, env: Mapping[str, str]) -> list[Mount]:
    """Each ``--mount`` of a RUN: CSV fields, each value read as a word (BuildKit 0.9 on)."""
    mounts = []
    expand = dockerfile.frontend.expands_mounts
    for spec in ins.flag_values("mount"):
        try:
            fields = csv_fields(spec)
        except WordError as exc:
            raise DockerfileError(dockerfile.path, ins.line, f"RUN --mount={spec}: {exc}") from None
        values: dict[str, str] = {"type": "bind"}
        literal = False
        for field in fields:
            key, eq, value = field.partition("=")
            if not eq:
                continue  # ro, rw, required
            if expand:
                read = dockerfile.word(value, env, ins.line, f"RUN --mount {key}")
            else:
                try:
                    read = process_word(value, env, dockerfile.escape, dockerfile.frontend.lexer).text
                except WordError:
                    read = value
            literal = literal or read != value
            values[_KEYS.get(key.lower(), key.lower())] = read if expand else value
        mounts.append(
            Mount(
                values["type"].lower(),
                values.get("source"),
                values.get("target"),
                values.get("from"),
                literal,
            )
        )
    return mounts
