"""Prove that a prod image holds no dev-only Python package.

which image      :func:`stagecache.project.choose.prod_choice` (a target, or a stage built for the
                 check only: never stored, no tag but its key tag)
what is there    :mod:`.installed` (a probe run in the image: every distribution on its file system)
what is dev-only :mod:`.devpackages` (the lock, else the declarations, of the prod image's context or
                 the project; ``[tool.stagecache] dev-packages`` adds names)
why it is there  :func:`.installed.classify`: a leak (a failure), or there for a tool or the base
                 image (reported, not counted)
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

from ..engine.base import Engine
from .devpackages import dev_only_packages
from .graph import DevPackages
from .installed import Finding, Installed, classify, installs_in, probe, run_texts

if TYPE_CHECKING:
    from ..build import Resolver
    from ..project.choose import ProdChoice
    from ..project.settings import Settings, Target

__all__ = ["DevPackages", "Finding", "ProdCheck", "Report", "check", "check_prod", "dev_only_packages"]


@dataclass
class Report:
    image: str
    dev_packages: DevPackages
    found: list[Finding] = field(default_factory=list)  # leaks: the check fails
    explained: list[Finding] = field(default_factory=list)  # there for a tool or the base image
    installed_count: int = 0
    base_image: str | None = None

    @property
    def clean(self) -> bool:
        return not self.found


@dataclass
class ProdCheck:
    """``check-prod``'s answer: the prod image chosen and why, the report on it, and the images
    compared by size (the prod target, then the test service's when one can be told)."""

    target: str
    choice: ProdChoice
    report: Report
    images: dict[str, str]  # target name -> its key image
    sizes: dict[str, int]  # image -> bytes
    stored: bool = False  # the prod image went to the store (only a configured target's does)


def base_image(target: Target) -> str | None:
    """The image the target's stage is built ``FROM``, through its stages (None: unreadable)."""
    from ..key import dockerfile as df

    try:
        parsed = df.load(target.spec.dockerfile)
        stage = parsed.target(target.spec.stage)
        while (parent := parsed.base_stage(stage, target.spec.build_args)) is not None:
            stage = parent
        return parsed.base_ref(stage, target.spec.build_args)
    except Exception:  # noqa: BLE001 - no base image known: nothing is put down to it
        return None


def check(
    docker: Engine,
    image: str,
    roots: Sequence[Path],
    *,
    extra: Sequence[str] = (),
    base: str | None = None,
    runs: Sequence[tuple[str, int, str]] = (),
) -> Report:
    """The dev-only packages installed in ``image``. ``roots`` are where the lock or declarations are
    looked for, in order; ``base`` is the base image (asked what it ships only when something dev-only
    is found); ``runs`` are the RUN commands that built the image, for where a tool came from."""
    env, present = probe(docker, image)
    dev = dev_only_packages(roots, extra, env)

    def base_rows() -> list[Installed]:
        if base is None or docker.image_inspect(base) is None:
            return []
        return probe(docker, base)[1]

    findings = classify(dev, present, env, base=base_rows, base_name=f"the base image {base}",
                        installs=installs_in(runs))  # fmt: skip
    return Report(image, dev, [f for f in findings if f.counted], [f for f in findings if not f.counted],
                  len(present), base)  # fmt: skip


def sizes(docker: Engine, images: Sequence[str]) -> dict[str, int]:
    out = {}
    for image in images:
        info = docker.image_inspect(image)
        if info is not None:
            out[image] = info.size
    return out


def check_prod(
    resolver: Resolver,
    docker: Engine,
    settings: Settings,
    given: str | None,
    *,
    repository: str | None = None,
    build_args: Mapping[str, str] = MappingProxyType({}),
) -> ProdCheck:
    """Get the prod image (:func:`~stagecache.project.choose.prod_choice`), list the dev-only packages
    installed in it, and size it beside the test service's image.

    A configured prod target is resolved as ``build`` would (stored, its compose ``image:`` tagged); a
    stage built for the check only, and the test service's image, are never saved to the store and
    get no tag but their key tag."""
    from ..project import choose

    choice = choose.prod_choice(settings, given, repository=repository, build_args=build_args)
    prod = choice.target
    if choice.configured:
        result = resolver.resolve(prod, tags=[prod.image] if prod.image else [])
    else:
        result = resolver.resolve(prod, save=False)
    spec = prod.spec
    roots = [spec.context, spec.dockerfile.parent, settings.root]
    shown = os.path.relpath(spec.dockerfile, settings.root)
    report = check(
        docker,
        result.image,
        roots,
        extra=[str(n) for n in settings.tool.get("dev-packages", [])],
        base=base_image(prod),
        runs=run_texts(spec.dockerfile, spec.stage, spec.build_args, shown),
    )
    images = {prod.name: result.image}
    dev_target = choose.dev_target(settings)
    if dev_target is not None and dev_target.name not in images:
        images[dev_target.name] = resolver.resolve(dev_target, save=False).image
    return ProdCheck(prod.name, choice, report, images, sizes(docker, list(images.values())), result.stored)
