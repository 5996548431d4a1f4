"""Get the image of a target for its key, through the image tiers (:mod:`stagecache.store.tiers`).

    the first tier that has the key    -> fetch it into the daemon (a daemon hit: a retag at most; a
                                          store hit: a load), back-fill the writable tiers that lack it
    none has it                        -> lock the key in every tier, look again (another process may
                                          have made it meanwhile), build with BuildKit, and publish to
                                          every writable tier, unless the context changed during the build

Builders of one key take the key's lock in the store, so a second process waits for the first and then
finds the image instead of building it again.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

from .engine.base import NO_CONTEXTS, Engine
from .errors import BuildError, ConfigError
from .key.inputs import Inputs
from .key.spec import secret_arg
from .keying import Keyer
from .progress import Reporter, Silent
from .project.settings import Target
from .project.vcs import CommitProbe
from .refs import KEY_LABEL, TARGET_LABEL, key_ref, qualified, target_id
from .stages import (
    NO_PLAN,
    Plan,
    StageKey,
    describe,
    plan,
    replaceable,
    stage_label,
    stage_spec,
    unsupported_reason,
)
from .store.records import Records
from .store.tiers import Found, ImageTier, Publish


class Result(NamedTuple):
    target: str
    key: str
    image: str  # the key tag, <repository>:sc-<hex>
    image_id: str
    outcome: str  # the tier it came from ("daemon", "store"), or "built"
    seconds: float
    tags: list[str]
    cacheable: bool = True
    stored: bool = False
    restored: tuple[tuple[str, str], ...] = ()  # (stage, tier) of each stage a miss took from a tier

    def as_json(self) -> dict[str, object]:
        return {
            "target": self.target,
            "key": self.key,
            "image": self.image,
            "image_id": self.image_id,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 3),
            "tags": self.tags,
            "cacheable": self.cacheable,
            "stored": self.stored,
            "restored": [{"stage": stage, "from": tier} for stage, tier in self.restored],
        }


class Resolver:
    """Turns a target into an image: from the first tier that has its key, or by building it."""

    def __init__(
        self,
        engine: Engine,
        tiers: Sequence[ImageTier],
        keyer: Keyer,
        *,
        records: Records | None = None,
        reporter: Reporter | None = None,
    ) -> None:
        self.engine = engine
        self.tiers = list(tiers)
        self.keyer = keyer
        self.records = records  # None: no build records (`key --why` compares with nothing)
        self.reporter: Reporter = reporter or Silent()
        self._no_restore: str | None = None  # why stages are not restored here ("": they are)
        self._said_no_restore = False  # the reason is said once per resolver

    def key(self, target: Target) -> tuple[str, Inputs]:
        return self.keyer.key(target)

    # --- the main path --------------------------------------------------------------------------------
    def resolve(
        self,
        target: Target,
        *,
        tags: Sequence[str] | Callable[[], Sequence[str]] = (),
        rebuild: bool = False,
        save: bool = True,
        quiet_build: bool = False,
    ) -> Result:
        start = time.monotonic()
        key, found = self.key(target)
        ref = key_ref(target.repository, key)
        cacheable = not found.uncacheable
        for reason in found.uncacheable:
            self.reporter.warn(f"{target.name}: not cacheable, always built: {reason}")
        for warning in found.warnings:
            self.reporter.warn(f"{target.name}: {warning}")

        def publishing(image_id: str) -> Publish:
            bases = self.keyer.base_layers(found.public["images"])
            return Publish(key, ref, target.name, target.repository, image_id, found.public, bases)

        def finish(
            outcome: str,
            image_id: str,
            stored: bool = False,
            present: Sequence[str] = (),
            plan: Plan = NO_PLAN,
        ) -> Result:
            applied = self._apply_tags(image_id, tags() if callable(tags) else tags, present)
            if self.records is not None:
                self._record(target, key, found)
            return Result(target.name, key, ref, image_id, outcome, time.monotonic() - start, applied,
                          cacheable, stored, plan.restored)  # fmt: skip

        if cacheable and not rebuild:
            hit = self._fetch(target, key, ref)
            if hit is not None:
                tier, got = hit
                stored = self._backfill(tier, publishing(got.image_id), save=save)
                return finish(tier.name, got.image_id, stored, got.repo_tags)

        with self._locked(target, key, enabled=cacheable):
            if cacheable and not rebuild:  # another process may have made it while we waited
                hit = self._fetch(target, key, ref)
                if hit is not None:
                    return finish(hit[0].name, hit[1].image_id, False, hit[1].repo_tags)
            plan = NO_PLAN if rebuild else self._plan(target, found)
            image_id = self._build(target, key, quiet_build, plan.contexts)
            stage_ids = self._build_stages(target, plan, quiet_build)
            # The key's tag only now, after the check: a build the context changed under keeps the tags
            # asked for but not the key's (the next run builds again), and a build whose stagecache was
            # killed meanwhile (its BuildKit client dies with it) never names an image with a key.
            # A stage's inputs are part of its target's: the target's check covers its stage images.
            changed = (cacheable or bool(stage_ids)) and self._changed_during_build(target, key)
            stored = False
            if not changed:
                if cacheable:
                    self.engine.tag(image_id, ref)
                    if save:
                        item = publishing(image_id)
                        stored = any([tier.publish(item) for tier in self.tiers if tier.writable])
                self._keep_stages(target, stage_ids, save=save)
            return finish("built", image_id, stored, () if changed or not cacheable else (ref,), plan)

    # --- steps ----------------------------------------------------------------------------------------
    def _fetch(self, target: Target, key: str, ref: str) -> tuple[ImageTier, Found] | None:
        """The image from the first tier that has it."""
        for tier in self.tiers:
            got = tier.fetch(key, ref, target.name)
            if got is not None:
                return tier, got
        return None

    def _backfill(self, source: ImageTier, item: Publish, *, save: bool) -> bool:
        """A hit: each writable tier that lacks the key gets it (a fresh CI cache, a save that was killed);
        each that has it records a use, also when nothing is to be saved."""
        stored = False
        for tier in self.tiers:
            if tier is source or not tier.writable or tier.has(item.key) or not save:
                continue
            with tier.lock(item.key):
                if not tier.has(item.key):  # another process may have published it meanwhile
                    stored = tier.publish(item) or stored
        return stored

    @contextlib.contextmanager
    def _locked(self, target: Target, key: str, *, enabled: bool) -> Iterator[None]:
        if not enabled:
            yield
            return

        def waiting() -> None:
            self.reporter.step(target.name, "another process is building this key; waiting for it")

        with contextlib.ExitStack() as held:
            for tier in self.tiers:
                held.enter_context(tier.lock(key, on_wait=waiting))
            yield

    # --- stages (stages.py) ----------------------------------------------------------------------------
    def _plan(self, target: Target, found: Inputs) -> Plan:
        """A miss: the stages of the target some tier has stand in for them (:func:`stages.plan`)."""
        if self._no_restore is None:
            self._no_restore = unsupported_reason(self.engine.engine()) or ""
        build_args = self.keyer.build_args(target)
        if self._no_restore:
            names = replaceable(
                found.dockerfile, found.dockerfile.reached(found.stage, build_args), build_args
            )
            if names - {found.stage.name} and not self._said_no_restore:  # something to restore: why not
                self.reporter.step(target.name, f"no stage restored: {self._no_restore}")
                self._said_no_restore = True
            return NO_PLAN
        done = plan(
            found,
            build_args,
            key_of=lambda stage: self.key(target._replace(spec=stage_spec(target.spec, stage))),
            fetch=lambda item: self._fetch_stage(target, item),
        )
        if done.restored:
            self.reporter.step(target.name, describe(done))
        return done

    def _fetch_stage(self, target: Target, item: StageKey) -> tuple[str, str] | None:
        ref = key_ref(target.repository, item.key)
        for tier in self.tiers:
            if tier.fetch(item.key, ref, stage_label(target.name, item.stage)) is not None:
                return tier.name, ref
        return None

    def _build_stages(self, target: Target, plan: Plan, quiet: bool) -> list[tuple[StageKey, str]]:
        """The image of each stage the plan keeps (BuildKit's cache is warm: an export each)."""
        out = []
        for item in plan.publish:
            name = stage_label(target.name, item.stage)
            try:
                image_id = self._build(target, item.key, True, plan.contexts, stage=item.stage)
            except BuildError as exc:
                self.reporter.warn(f"{name}: the stage's image was not made, so not kept: {exc}")
                continue
            out.append((item, image_id))
        return out

    def _keep_stages(self, target: Target, built: Sequence[tuple[StageKey, str]], *, save: bool) -> None:
        """Each stage image under its key: tagged in the daemon, published to each writable tier."""
        for item, image_id in built:
            ref = key_ref(target.repository, item.key)
            self.engine.tag(image_id, ref)
            if not save:
                continue
            name = stage_label(target.name, item.stage)
            bases = self.keyer.base_layers(item.inputs.public["images"])
            publish = Publish(item.key, ref, name, target.repository, image_id, item.inputs.public, bases)
            for tier in self.tiers:
                if tier.writable:
                    with tier.lock(item.key):
                        if not tier.has(item.key):  # another process may have kept it meanwhile
                            tier.publish(publish)

    def _build(
        self,
        target: Target,
        key: str,
        quiet: bool,
        contexts: Mapping[str, str] = NO_CONTEXTS,
        *,
        stage: str | None = None,
    ) -> str:
        """Build the target (or ``stage``, one of its stages, labelled as kept under ``key``)."""
        spec = target.spec
        name = target.name if stage is None else stage_label(target.name, stage)
        if stage is None:
            self.reporter.step(target.name, "building with BuildKit")
        labels = {**spec.labels, KEY_LABEL: key, TARGET_LABEL: name}
        import tempfile  # only a build needs it

        with tempfile.TemporaryDirectory(prefix="stagecache-") as tmp:
            iidfile = Path(tmp) / "iid"
            done = self.engine.build(
                context=spec.context,
                dockerfile=spec.dockerfile,
                target=spec.stage if stage is None else stage,
                tags=[],
                build_args=spec.build_args,
                labels=labels,
                platform=spec.platform,
                options=spec.options,
                quiet=quiet,
                iidfile=iidfile,
                env_args=[
                    n for n, v in spec.build_args.items() if secret_arg(n, v, self.keyer.secret_patterns)
                ],
                secrets=spec.secrets,
                build_contexts=contexts,
            )
            if done.returncode != 0:
                raise BuildError(name, done.stderr or "")
            try:
                return iidfile.read_text().strip()
            except OSError:
                raise BuildError(name, "docker buildx build wrote no image ID (--iidfile)") from None

    def _changed_during_build(self, target: Target, key: str) -> bool:
        """Whether the context or a base image changed while BuildKit read them (then the image may not
        match the key). The base images are asked about again: a tag moved meanwhile (a pull in another
        CI step) means BuildKit may have built on the new one."""
        self.keyer.forget_images()
        again, _ = self.key(target)
        if again == key:
            return False
        self.reporter.warn(
            f"{target.name}: the context or a base image changed during the build; "
            "image not kept under its key"
        )
        return True

    def _record(self, target: Target, key: str, found: Inputs) -> None:
        """Keep the manifest of the target's current key, for `key --why`; written only when it changes."""
        assert self.records is not None
        name = target_id(target.repository, target.name)
        if self.records.last_build_key(name) == key:
            return
        try:
            self.records.record_build(name, key, found.public)
        except OSError as exc:
            self.reporter.warn(f"{target.name}: could not record the build's manifest: {exc}")

    def _apply_tags(self, image_id: str, tags: Sequence[str], present: Sequence[str] = ()) -> list[str]:
        """Point each tag at the image; tags that already do cost nothing (a hit is a retag at most)."""
        have = {qualified(t) for t in present}
        for tag in tags:
            if qualified(tag) not in have:
                self.engine.tag(image_id, tag)
        return list(tags)


# Stage names that say "this is what ships": the commit-SHA tag without a suffix goes to such a target.
PROD_STAGES = ("prod", "production", "release", "runtime", "final")


def build_targets(
    resolver: Resolver,
    targets: Sequence[Target],
    *,
    siblings: Sequence[Target] = (),
    extra_tags: Sequence[str] = (),
    commit: CommitProbe | None = None,
    rebuild: bool = False,
    save: bool = True,
    quiet: bool = False,
    on_result: Callable[[Result], None] = lambda result: None,
) -> list[Result]:
    """``stagecache build``: each target through the resolver, tagged as :func:`tags_for` says; the
    commit probe (git, run beside the keys) is closed at the end, also on a failed build.
    ``siblings``: every target of the project (default: ``targets``), for the commit-tag rule."""
    siblings = siblings or targets
    try:
        check_tags_unique(targets, extra_tags)
        results = []
        for target in targets:
            tags = tags_for(target, extra_tags, commit, siblings)
            result = resolver.resolve(target, tags=tags, rebuild=rebuild, save=save, quiet_build=quiet)
            on_result(result)
            results.append(result)
    finally:
        if commit is not None:
            commit.close()
    return results


def check_tags_unique(targets: Sequence[Target], extra_tags: Sequence[str]) -> None:
    """No tag may land on two targets: the later build would take it from the earlier one silently."""
    if extra_tags and len(targets) > 1:
        names = ", ".join(t.name for t in targets)
        raise ConfigError(f"--tag names one image, but {len(targets)} targets are built ({names}): build one")
    owners: dict[str, str] = {}
    for target in targets:
        for image in filter(None, (target.image, *target.tags)):
            tag = qualified(image)
            if tag in owners:
                raise ConfigError(
                    f"targets {owners[tag]!r} and {target.name!r} both name the image {image!r}: "
                    "give each service its own `image:` (or tag)"
                )
            owners[tag] = target.name


def commit_tag(target: Target, siblings: Sequence[Target], sha: str) -> str:
    """``<repository>:<sha>`` for the target that ships (the only target of its repository, or the one
    built for a prod stage); ``<repository>:<sha>-<stage>`` for every other, so that a CI job pushing
    ``<repository>:<sha>`` never ships the dev image."""
    same = [t for t in siblings if t.repository == target.repository] or [target]
    shipping = [t for t in same if (t.spec.stage or "").lower() in PROD_STAGES]
    if same == [target] or shipping == [target]:
        return f"{target.repository}:{sha}"
    stage = (target.spec.stage or "").lower()
    # the stage names the image where it tells this repository's targets apart, else the target's name
    told_apart = stage and sum((t.spec.stage or "").lower() == stage for t in same) == 1
    suffix = (
        re.sub(r"[^a-z0-9_.-]+", "-", stage if told_apart else target.name.lower()).strip(".-") or "target"
    )
    return f"{target.repository}:{sha}-{suffix}"[: len(target.repository) + 1 + 128]


def tags_for(
    target: Target, given: Sequence[str], commit: CommitProbe | None, siblings: Sequence[Target] = ()
) -> Callable[[], list[str]]:
    """The tags a target's image gets besides its key tag: ``--tag``, the commit SHA (:func:`commit_tag`),
    compose's ``image:``. Asked for once the image is there, so that git has had the key's time to answer."""

    def tags() -> list[str]:
        wanted = list(given)
        if commit is not None and (sha := commit.result()):
            wanted.append(commit_tag(target, siblings or [target], sha))
        if target.image:
            wanted.append(target.image)
        wanted.extend(target.tags)  # compose's build.tags
        return wanted

    return tags
