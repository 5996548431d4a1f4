"""Stage-level restore: on a target's miss, the stages it builds through that some tier already has.

Each named stage a target builds through gets the key it would have as the target (the target's spec
with ``stage`` set to it: :func:`stage_spec`; no second kind of key). On a miss the graph is walked
from the target: a stage some tier has is fetched and handed to BuildKit as a named build context
(``--build-context deps=docker-image://…``, which replaces the stage of that name), and the walk does
not go below it; a stage no tier has is walked into, and its image is made and kept after the build
(:class:`Plan.publish`), so that the next commit can restore it.

Never replaced: the target itself, an unnamed stage (a named context overrides a name), a stage some
instruction names by index (``--from=0``), and a stage with ``ONBUILD`` instructions (its triggers
would run from the image's config instead of the Dockerfile's text). An uncacheable stage (its
``Inputs.uncacheable``) is neither restored nor kept.

Named build contexts need BuildKit 0.10 (Docker Engine 23): :func:`unsupported_reason` says why not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

from .engine.base import Engine, EngineInfo
from .key import dockerfile as df
from .key.inputs import Inputs
from .key.spec import TargetSpec
from .keying import Keyer
from .progress import Reporter
from .project.settings import Target
from .refs import key_ref
from .store.tiers import ImageTier, Publish

# The first Docker Engine whose BuildKit (0.10) accepts named contexts from the docker driver.
FIRST_ENGINE = 23


class StageKey(NamedTuple):
    """A stage of a target's build, keyed as if it were the target."""

    stage: str  # the stage's name
    key: str
    inputs: Inputs


class Plan(NamedTuple):
    """What a target's build gets from the tiers, and which stage images it should leave behind."""

    restored: tuple[tuple[str, str], ...] = ()  # (stage, tier it came from), in walk order
    contexts: Mapping[str, str] = {}  # stage -> the image reference that replaces it
    publish: tuple[StageKey, ...] = ()  # stages this build makes whose key no tier has


NO_PLAN = Plan()


def unsupported_reason(info: EngineInfo) -> str | None:
    """Why this engine cannot replace a stage (None: it can): its BuildKit predates named contexts."""
    try:
        major = int(info.version.split(".")[0])
    except ValueError:
        return f"Docker Engine {info.version!r} is not a version known to take BuildKit named contexts"
    if major >= FIRST_ENGINE:
        return None
    return (
        f"Docker Engine {info.version}'s BuildKit has no named build contexts "
        f"(Docker Engine {FIRST_ENGINE} or later has)"
    )


def stage_spec(spec: TargetSpec, stage: str) -> TargetSpec:
    """The spec whose key is a stage's key: the target's, with the stage as the target."""
    return spec._replace(stage=stage)


def stage_label(target: str, stage: str) -> str:
    """How a stage image of a target is named in labels, records and messages: ``dev/deps``."""
    return f"{target}/{stage}"


def replaceable(dockerfile: df.Dockerfile, stages: list[df.Stage], build_args: Mapping[str, str]) -> set[str]:
    """The names of the stages among ``stages`` that a named context may stand in for."""
    by_index: set[int] = set()
    for stage in stages:
        base = dockerfile.base_stage(stage, build_args)
        triggers = base.triggers(dockerfile.path) if base is not None else []
        for ins in [*triggers, *stage.instructions]:
            for _, ref in dockerfile.from_refs(ins):
                if re.fullmatch(r"[+-]?\d+", ref) and (found := dockerfile.stage(ref)) is not None:
                    by_index.add(found.index)
    return {
        s.name
        for s in stages
        if s.name is not None
        and s.index not in by_index
        and not any(ins.cmd == "ONBUILD" for ins in s.instructions)
    }


def plan(
    found: Inputs,
    build_args: Mapping[str, str],
    key_of: Callable[[str], tuple[str, Inputs]],
    fetch: Callable[[StageKey], tuple[str, str] | None],
) -> Plan:
    """Walk the target's stage graph from the target (``found``: its inputs).

    ``key_of(stage)`` gives a stage's key and inputs; ``fetch(stage_key)`` brings the stage's image into
    the daemon from the first tier that has it and answers (tier name, image reference), or None."""
    dockerfile, target = found.dockerfile, found.stage
    reached = dockerfile.reached(target, build_args)
    can_replace = replaceable(dockerfile, reached, build_args) - {target.name}
    restored: list[tuple[str, str]] = []
    contexts: dict[str, str] = {}
    publish: list[StageKey] = []
    seen = {target.index}
    queue = [target]
    while queue:
        stage = queue.pop(0)
        for dep in dockerfile.dependencies(stage, build_args):
            if dep.kind != "stage":
                continue
            child = dockerfile.stage(dep.ref)
            assert child is not None  # `reached` resolved it already
            if child.index in seen:
                continue
            seen.add(child.index)
            if child.name is not None and child.name in can_replace:
                key, inputs = key_of(child.name)
                if not inputs.uncacheable:
                    item = StageKey(child.name, key, inputs)
                    hit = fetch(item)
                    if hit is not None:
                        restored.append((child.name, hit[0]))
                        contexts[child.name] = hit[1]
                        continue  # its image stands in for it and everything below it
                    publish.append(item)
            queue.append(child)
    return Plan(tuple(restored), contexts, tuple(publish))


def describe(plan: Plan) -> str:
    """``restored deps, runtime from the store; building the rest``."""
    by_tier: dict[str, list[str]] = {}
    for stage, tier in plan.restored:
        by_tier.setdefault(tier, []).append(stage)
    parts = [f"{', '.join(stages)} from the {tier}" for tier, stages in by_tier.items()]
    return f"restored {' and '.join(parts)}; building the rest"


class Restorer:
    """The resolver's stage work: the plan of a miss (stages asked of the tiers, daemon first), and the
    stage images a build made, kept under their keys."""

    def __init__(self, engine: Engine, tiers: Sequence[ImageTier], keyer: Keyer, reporter: Reporter) -> None:
        self.engine = engine
        self.tiers = tiers
        self.keyer = keyer
        self.reporter = reporter
        self._unsupported: str | None = None  # why stages are not restored here ("": they are)
        self._said = False  # the reason is said once

    def plan(self, target: Target, found: Inputs, *, save: bool = True) -> Plan:
        """A miss: the stages of the target some tier has stand in for them (:func:`plan`)."""
        if self._unsupported is None:  # a miss only: a hit never asks
            self._unsupported = unsupported_reason(self.engine.engine()) or ""
        build_args = self.keyer.build_args(target)
        if self._unsupported:
            reached = found.dockerfile.reached(found.stage, build_args)
            if replaceable(found.dockerfile, reached, build_args) - {found.stage.name} and not self._said:
                self.reporter.step(target.name, f"no stage restored: {self._unsupported}")
                self._said = True
            return NO_PLAN
        done = plan(
            found,
            build_args,
            key_of=lambda stage: self.keyer.key(target._replace(spec=stage_spec(target.spec, stage))),
            fetch=lambda item: self._fetch(target, item, save=save),
        )
        if done.restored:
            self.reporter.step(target.name, describe(done))
        return done

    def _fetch(self, target: Target, item: StageKey, *, save: bool = True) -> tuple[str, str] | None:
        """The stage's image from the first tier that has it; the writable tiers that lack it get it, as
        a target's hit back-fills them (a fresh CI cache on a runner whose daemon kept the stage)."""
        ref = key_ref(target.repository, item.key)
        for tier in self.tiers:
            got = tier.fetch(item.key, ref, stage_label(target.name, item.stage))
            if got is not None:
                if save:
                    self.keep(target, [(item, got.image_id)], save=True, skip=tier)
                return tier.name, ref
        return None

    def keep(
        self,
        target: Target,
        built: Sequence[tuple[StageKey, str]],
        *,
        save: bool,
        skip: ImageTier | None = None,
    ) -> None:
        """Each stage image under its key: tagged in the daemon, published to each writable tier (but
        ``skip``, the tier it came from)."""
        for item, image_id in built:
            ref = key_ref(target.repository, item.key)
            if skip is None:
                self.engine.tag(image_id, ref)
            if not save:
                continue
            name = stage_label(target.name, item.stage)
            bases = self.keyer.base_layers(item.inputs.public["images"])
            publish = Publish(item.key, ref, name, target.repository, image_id, item.inputs.public, bases)
            for tier in self.tiers:
                if tier.writable and tier is not skip and not tier.has(item.key):
                    with tier.lock(item.key):
                        if not tier.has(item.key):  # another process may have kept it meanwhile
                            tier.publish(publish)
