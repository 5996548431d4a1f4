"""``stagecache build`` of several targets: the tags each image gets besides its key tag, and no tag
on two targets; the targets go through :meth:`stagecache.build.Resolver.resolve_many` together."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .errors import ConfigError
from .project.settings import Target
from .project.vcs import CommitProbe
from .refs import qualified

if TYPE_CHECKING:
    from .build import Resolver, Result

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
    """``stagecache build``: the targets through the resolver together (the misses in one BuildKit
    solve), each tagged as :func:`tags_for` says; the commit probe (git, run beside the keys) is closed
    at the end, also on a failed build. ``siblings``: every target of the project (default:
    ``targets``), for the commit-tag rule."""
    siblings = siblings or targets
    try:
        check_tags_unique(targets, extra_tags)
        wanted = [(target, tags_for(target, extra_tags, commit, siblings)) for target in targets]
        return resolver.resolve_many(
            wanted, rebuild=rebuild, save=save, quiet_build=quiet, on_result=on_result
        )
    finally:
        if commit is not None:
            commit.close()


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
