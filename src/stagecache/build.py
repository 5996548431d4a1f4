"""Get the image of a target for its key, through the image tiers (:mod:`stagecache.store.tiers`).

    the first tier that has the key    -> fetch it into the daemon (a daemon hit: a retag at most; a
                                          store hit: a load), back-fill the writable tiers that lack it
    none has it                        -> lock the key in every tier, look again (another process may
                                          have made it meanwhile), restore the stages some tier has
                                          (:mod:`stagecache.stages`), build with BuildKit, and publish
                                          to every writable tier, unless the context changed meanwhile

Builders of one key take the key's lock in the store, so a second process waits for the first and then
finds the image instead of building it again. The targets of one :meth:`Resolver.resolve_many` that
miss are built together, with the stage images they keep, in one BuildKit solve (:mod:`stagecache.bake`).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from .engine.base import Engine
from .errors import BuildError
from .key.inputs import Inputs
from .key.spec import secret_arg
from .keying import Keyer
from .progress import Reporter, Silent
from .project.settings import Target
from .refs import KEY_LABEL, TARGET_LABEL, key_ref, qualified, target_id
from .stages import NO_PLAN, Plan, Restorer, StageKey, stage_label
from .store.records import Records
from .store.tiers import Found, ImageTier, Publish

if TYPE_CHECKING:
    from .bake import Request

Tags = Sequence[str] | Callable[[], Sequence[str]]


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


class Job(NamedTuple):
    """A target on its way through the resolver."""

    target: Target
    key: str
    found: Inputs
    tags: Tags
    start: float

    @property
    def ref(self) -> str:
        return key_ref(self.target.repository, self.key)

    @property
    def cacheable(self) -> bool:
        return not self.found.uncacheable


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
        self.stages = Restorer(engine, self.tiers, keyer, self.reporter)

    def key(self, target: Target) -> tuple[str, Inputs]:
        return self.keyer.key(target)

    # --- the main path --------------------------------------------------------------------------------
    def resolve(
        self, target: Target, *, tags: Tags = (), rebuild: bool = False, save: bool = True,
        quiet_build: bool = False,
    ) -> Result:  # fmt: skip
        return self.resolve_many([(target, tags)], rebuild=rebuild, save=save, quiet_build=quiet_build)[0]

    def resolve_many(
        self,
        targets: Sequence[tuple[Target, Tags]],
        *,
        rebuild: bool = False,
        save: bool = True,
        quiet_build: bool = False,
        on_result: Callable[[Result], None] = lambda result: None,
    ) -> list[Result]:
        """Each target with the tags it gets; the hits first, as they come, then the misses, built
        together (:mod:`stagecache.bake`). ``on_result`` hears of each result when it is there."""
        results: dict[int, Result] = {}

        def done(index: int, result: Result) -> None:
            results[index] = result
            on_result(result)

        misses: list[tuple[int, Job]] = []
        for index, (target, tags) in enumerate(targets):
            job = self._start(target, tags)
            hit = None if rebuild or not job.cacheable else self._fetch(target, job.key, job.ref)
            if hit is not None:
                tier, got = hit
                stored = self._backfill(tier, self._publishing(job, got.image_id), save=save)
                done(index, self._finish(job, tier.name, got.image_id, stored, got.repo_tags))
            else:
                misses.append((index, job))
        if misses:
            with self._locked([job for _, job in misses if job.cacheable]):
                building: list[tuple[int, Job, Plan]] = []
                for index, job in misses:
                    hit = None if rebuild or not job.cacheable else self._fetch(job.target, job.key, job.ref)
                    if hit is not None:  # another process made it while we waited for the lock
                        done(index, self._finish(job, hit[0].name, hit[1].image_id, False, hit[1].repo_tags))
                    else:
                        building.append(
                            (
                                index,
                                job,
                                NO_PLAN if rebuild else self.stages.plan(job.target, job.found, save=save),
                            )
                        )
                made = self._bake(building, quiet_build)
                for index, job, plan_ in building:
                    done(index, self._built(job, plan_, made, quiet=quiet_build, save=save))
        return [results[i] for i in range(len(targets))]

    def _start(self, target: Target, tags: Tags) -> Job:
        start = time.monotonic()
        key, found = self.key(target)
        for reason in found.uncacheable:
            self.reporter.warn(f"{target.name}: not cacheable, always built: {reason}")
        for warning in found.warnings:
            self.reporter.warn(f"{target.name}: {warning}")
        return Job(target, key, found, tags, start)

    def _publishing(self, job: Job, image_id: str) -> Publish:
        bases = self.keyer.base_layers(job.found.public["images"])
        return Publish(
            job.key, job.ref, job.target.name, job.target.repository, image_id, job.found.public, bases
        )

    def _finish(
        self, job: Job, outcome: str, image_id: str, stored: bool = False, present: Sequence[str] = (),
        plan_: Plan = NO_PLAN,
    ) -> Result:  # fmt: skip
        applied = self._apply_tags(image_id, job.tags() if callable(job.tags) else job.tags, present)
        if self.records is not None:
            self._record(job.target, job.key, job.found)
        return Result(job.target.name, job.key, job.ref, image_id, outcome, time.monotonic() - job.start,
                      applied, job.cacheable, stored, plan_.restored)  # fmt: skip

    def _built(
        self, job: Job, plan_: Plan, made: dict[str, str] | None, *, quiet: bool, save: bool
    ) -> Result:
        """A miss: its image (from the bake ``made``, else built now) and its stage images, kept."""
        target = job.target
        if made is None or target.name not in made:
            image_id = self._build(self._request(target, job.key, plan_), quiet)
            stage_ids = self._build_stages(target, plan_)
        else:
            image_id = made[target.name]
            names = [(item, stage_label(target.name, item.stage)) for item in plan_.publish]
            stage_ids = [(item, made[name]) for item, name in names if name in made]
        # The key's tag only now, after the check: a build the context changed under keeps the tags
        # asked for but not the key's (the next run builds again), and a build whose stagecache was
        # killed meanwhile (its BuildKit client dies with it) never names an image with a key.
        # A stage's inputs are part of its target's: the target's check covers its stage images.
        changed = (job.cacheable or bool(stage_ids)) and self._changed_during_build(target, job.key)
        stored = False
        if not changed:
            if job.cacheable:
                self.engine.tag(image_id, job.ref)
                if save:
                    item = self._publishing(job, image_id)
                    stored = any([tier.publish(item) for tier in self.tiers if tier.writable])
            self.stages.keep(target, stage_ids, save=save)
        return self._finish(
            job, "built", image_id, stored, () if changed or not job.cacheable else (job.ref,), plan_
        )

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
    def _locked(self, jobs: Sequence[Job]) -> Iterator[None]:
        """The jobs' keys in every tier, in the keys' order (two processes never wait for each other)."""
        owners = {job.key: job.target.name for job in jobs}
        with contextlib.ExitStack() as held:
            for key in sorted(owners):

                def waiting(name: str = owners[key]) -> None:
                    self.reporter.step(name, "another process is building this key; waiting for it")

                for tier in self.tiers:
                    held.enter_context(tier.lock(key, on_wait=waiting))
            yield

    # --- stages (stages.py) ----------------------------------------------------------------------------
    def _build_stages(self, target: Target, plan_: Plan) -> list[tuple[StageKey, str]]:
        """The image of each stage the plan keeps, one build each (BuildKit's cache is warm: an export)."""
        out = []
        for item in plan_.publish:
            try:
                out.append((item, self._build(self._request(target, item.key, plan_, item.stage), True)))
            except BuildError as exc:
                self.reporter.warn(f"{exc.target}: the stage's image was not made, so not kept: {exc}")
        return out

    # --- BuildKit -------------------------------------------------------------------------------------
    def _request(self, target: Target, key: str, plan_: Plan, stage: str | None = None) -> Request:
        """The target's image (or ``stage``'s, labelled as kept under the stage's ``key``)."""
        from .bake import Request  # only a build needs it

        spec = target.spec
        name = target.name if stage is None else stage_label(target.name, stage)
        labels = {**spec.labels, KEY_LABEL: key, TARGET_LABEL: name}
        return Request(name, spec.context, spec.dockerfile, spec.stage if stage is None else stage,
                       spec.build_args, labels, spec.platform, spec.secrets, plan_.contexts,
                       spec.options)  # fmt: skip

    def _build(self, request: Request, quiet: bool) -> str:
        """One image with ``docker buildx build``; its ID."""
        if "/" not in request.name:
            self.reporter.step(request.name, "building with BuildKit")
        import tempfile  # only a build needs it

        with tempfile.TemporaryDirectory(prefix="stagecache-") as tmp:
            iidfile = Path(tmp) / "iid"
            done = self.engine.build(
                context=request.context,
                dockerfile=request.dockerfile,
                target=request.stage,
                tags=[],
                build_args=request.build_args,
                labels=request.labels,
                platform=request.platform,
                options=request.options,
                quiet=quiet or "/" in request.name,  # a stage image: an export, nothing to show
                iidfile=iidfile,
                env_args=[
                    n for n, v in request.build_args.items() if secret_arg(n, v, self.keyer.secret_patterns)
                ],
                secrets=request.secrets,
                build_contexts=request.contexts,
            )
            if done.returncode != 0:
                raise BuildError(request.name, done.stderr or "")
            try:
                return iidfile.read_text().strip()
            except OSError:
                raise BuildError(request.name, "docker buildx build wrote no image ID (--iidfile)") from None

    def _bake(self, building: Sequence[tuple[int, Job, Plan]], quiet: bool) -> dict[str, str] | None:
        """Every image of the misses (targets, then the stage images they keep) in one bake; each
        request's image ID by its name. None: one build at a time (one request, a request bake cannot
        take, or a bake that failed: BuildKit's cache keeps what it made, and a failing build then says
        which target failed)."""
        from .bake import bake_name, bakeable, definition, image_ids  # only a build needs it

        requests = [self._request(job.target, job.key, plan_) for _, job, plan_ in building]
        requests += [
            self._request(job.target, item.key, plan_, item.stage)
            for _, job, plan_ in building
            for item in plan_.publish
        ]
        if not bakeable(requests, self.keyer.secret_patterns):
            return None
        names = [job.target.name for _, job, _ in building]
        for name in names:
            self.reporter.step(name, f"building with BuildKit (one bake: {', '.join(names)})")
        import json
        import tempfile

        with tempfile.TemporaryDirectory(prefix="stagecache-") as tmp:
            metadata = Path(tmp) / "metadata.json"
            done = self.engine.bake(definition(requests), [bake_name(i) for i in range(len(requests))],
                                    metadata=metadata, quiet=quiet)  # fmt: skip
            try:
                ids = (
                    image_ids(json.loads(metadata.read_text()), len(requests)) if done.returncode == 0 else []
                )
            except (OSError, ValueError):
                ids = []
        if len(ids) != len(requests) or None in ids:
            self.reporter.warn("docker buildx bake failed; building one target at a time")
            return None
        return {r.name: image_id for r, image_id in zip(requests, ids, strict=True) if image_id}

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


# `stagecache build`'s tags and targets live in targets.py; spelled here too for their older callers
from .targets import PROD_STAGES, build_targets, check_tags_unique, commit_tag, tags_for  # noqa: E402

__all__ = [
    "PROD_STAGES",
    "Job",
    "Resolver",
    "Result",
    "build_targets",
    "check_tags_unique",
    "commit_tag",
    "tags_for",
]
