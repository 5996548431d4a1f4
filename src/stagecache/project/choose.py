"""Which target a command works on when the user names none.

For the test service and the service to run: the name given on the command line, else the one
``[tool.stagecache]`` names for the role, else the one target built for the role's stage (``dev``,
``development``, ``test`` for tests; ``prod`` to run; compared without case), else, for tests, the only
target there is. More than one candidate, or none, is a :class:`ConfigError` that lists the targets,
never a guess.

The prod image ``check-prod`` inspects (:func:`prod_choice`) is found further, because real projects
often build it with no compose service at all:

1. the name given on the command line, else ``[tool.stagecache] prod-target``: a target, a stage of the
   test service's Dockerfile, or ``PATH[:STAGE]`` (a Dockerfile, relative to the project);
2. the targets (compose services, or ``-f`` stages) that build a stage named ``prod``, ``production``,
   ``release``, ``runtime`` or ``final``, in that order (a service without ``target:`` builds the
   last stage); several building the same stage of the same Dockerfile are one image;
3. in the Dockerfile the test service uses, a stage of one of those names, even one no service builds;
4. a second Dockerfile beside it (``Dockerfile.prod``, ``prod.Dockerfile``, …): its stage of one of
   those names, else its last stage, named or not;
5. the test Dockerfile's last stage, when the test service does not build it.

With no test service to start from (a ``web`` service and a ``db`` built from its own folder), 3 and 4
look at each Dockerfile the targets use, and a prod image found for one of them only is the one.

A stage found in 3-5 that no target builds is built for the check only: through the resolver with
``save=False``, never stored, tagged with nothing but its key tag.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import NamedTuple

from ..errors import ConfigError
from .settings import Settings, Target


class Role(NamedTuple):
    setting: str  # the [tool.stagecache] key that names the target for this role
    stages: tuple[str, ...]  # the Dockerfile stages a target of this role is built for, in order
    what: str  # how a message names it
    only: bool = False  # with no configured or stage match, the only target there is


PROD_STAGES = ("prod", "production", "release", "runtime", "final")
DEV_STAGES = ("dev", "development", "test", "tests", "testing")
# A second Dockerfile for prod: "Dockerfile.prod", "Dockerfile-release", "prod.Dockerfile", …
SECOND_DOCKERFILE_WORDS = (*PROD_STAGES, "prd", "deploy")

TEST_SERVICE = Role("test-service", DEV_STAGES, "test service", only=True)
RUN_SERVICE = Role("run-service", ("prod",), "service to run")
PROD_TARGET = Role("prod-target", ("prod",), "prod target")


def built_for_stage(settings: Settings, stage: str) -> list[Target]:
    """The targets built for the stage ``stage`` (case-insensitive), in the order of the settings."""
    return [t for t in settings.targets.values() if (t.spec.stage or "").lower() == stage.lower()]


def pick(settings: Settings, given: str | None, role: Role) -> Target:
    """The target for ``role``: as named, else as configured, else the one built for its stage."""
    name = given or settings.tool.get(role.setting)
    if name:
        (target,) = settings.select([str(name)])
        return target
    for stage in role.stages:
        matches = built_for_stage(settings, stage)
        if len(matches) == 1:
            return matches[0]
        if matches:
            break
    if role.only and len(settings.targets) == 1:
        return next(iter(settings.targets.values()))
    raise ConfigError(
        f"name the {role.what} (or set [tool.stagecache] {role.setting}); "
        f"targets: {', '.join(sorted(settings.targets))}"
    )


def test_service(settings: Settings, given: str | None) -> Target:
    return pick(settings, given, TEST_SERVICE)


def run_service(settings: Settings, given: str | None) -> Target:
    """The service ``stagecache run`` starts; running services needs a compose file."""
    if not settings.compose_files:
        raise ConfigError("stagecache run needs a compose file (docker-compose.yml or compose.yaml)")
    return pick(settings, given, RUN_SERVICE)


def prod_target(settings: Settings, given: str | None) -> Target:
    return pick(settings, given, PROD_TARGET)


def dev_target(settings: Settings) -> Target | None:
    """The target whose size ``check-prod`` shows beside prod's: the test service, if one can be told."""
    try:
        return test_service(settings, None)
    except ConfigError:
        return None


def single_target(settings: Settings, given: str | None) -> Target:
    """The target of a command that works on one (``key``): as named, else the first default, else
    the only target there is."""
    if given:
        names = [given]
    elif settings.defaults:
        names = settings.defaults[:1]
    elif len(settings.targets) <= 1:
        names = list(settings.targets)  # none: select() says there are no targets and how to add one
    else:
        raise ConfigError(f"name a target; targets: {', '.join(sorted(settings.targets))}")
    (target,) = settings.select(names)
    return target


# --- the prod image check-prod inspects -----------------------------------------------------------------
class ProdChoice(NamedTuple):
    """The prod image's target, why it was chosen (one line), and whether it is one the project
    configures (then it is stored as a build of it would be) or was made for the check only."""

    target: Target
    reason: str
    configured: bool


class _Stages(NamedTuple):
    names: list[str | None]  # each stage's name (None: unnamed), in file order
    labels: list[str]


def _stages(dockerfile: Path) -> _Stages | None:
    from ..key import dockerfile as df

    try:
        parsed = df.load(dockerfile)
    except Exception:  # noqa: BLE001 - a Dockerfile that cannot be read names no prod stage; build says why
        return None
    return _Stages([s.name for s in parsed.stages], [s.label for s in parsed.stages])


def built_stage(target: Target) -> str | None:
    """The stage a target builds, lower-cased: its ``target:``, else its Dockerfile's last stage (None:
    the last stage is unnamed, or the Dockerfile cannot be read)."""
    if target.spec.stage:
        return target.spec.stage.lower()
    found = _stages(target.spec.dockerfile)
    return found.names[-1] if found and found.names else None


def _shown(settings: Settings, path: Path) -> str:
    try:
        return os.path.relpath(path, settings.root)
    except ValueError:  # another drive
        return str(path)


def prod_choice(
    settings: Settings,
    given: str | None,
    *,
    repository: str | None = None,
    build_args: Mapping[str, str] = MappingProxyType({}),
) -> ProdChoice:
    """The prod image for ``check-prod`` (the module's docstring gives the rule). ``repository`` and
    ``build_args`` (the command line's) apply to a stage built for the check only."""
    adhoc = _Adhoc(settings, repository, build_args)
    test = dev_target(settings)
    for name, why in ((given, "named on the command line"),
                      (settings.tool.get("prod-target"), "[tool.stagecache] prod-target")):  # fmt: skip
        if name:
            return _named(settings, adhoc, test, str(name), why)
    for stage in PROD_STAGES:
        matches = [t for t in settings.targets.values() if built_stage(t) == stage]
        if matches:
            return _one_of(settings, matches, stage)
    if test is not None:
        choice = _in_dockerfile(settings, adhoc, test.spec.dockerfile, test.spec.context, test)
        if choice is not None:
            return choice
        where = _shown(settings, test.spec.dockerfile)
        raise _not_found(settings, f"none in {where} (the test service's) or a second Dockerfile beside it")
    # no test service to start from: each Dockerfile the targets use, if only one of them has a prod image
    dockerfiles = {t.spec.dockerfile: t.spec.context for t in sorted(settings.targets.values(), key=_by_name)}
    found = [c for d, ctx in dockerfiles.items() if (c := _in_dockerfile(settings, adhoc, d, ctx, None))]
    if len(found) == 1:
        return found[0]
    if found:
        names = ", ".join(c.target.name for c in found)
        raise ConfigError(
            f"name the prod image (stagecache check-prod TARGET|STAGE|PATH[:STAGE], or [tool.stagecache] "
            f"prod-target): the targets' Dockerfiles have several: {names}"
        )
    where = ", ".join(_shown(settings, d) for d in dockerfiles) or "(no Dockerfile)"
    raise _not_found(settings, f"none in {where} or a second Dockerfile beside them")


def _by_name(target: Target) -> str:
    return target.name


def _in_dockerfile(
    settings: Settings, adhoc: _Adhoc, dockerfile: Path, context: Path, test: Target | None
) -> ProdChoice | None:
    """Steps 3-5 of the rule in ``dockerfile`` (the test service's, when ``test`` is given)."""
    found = _stages(dockerfile)
    if found:
        for stage in PROD_STAGES:
            if stage in found.names:
                shown = _shown(settings, dockerfile)
                reason = f"stage {stage!r} of {shown}: a prod stage name that no target builds"
                return adhoc.choice(dockerfile, context, stage, reason)
    for second in second_dockerfiles(dockerfile, context, settings.root):
        other = _stages(second)
        if not other or not other.names:
            continue
        shown = _shown(settings, second)
        for stage in PROD_STAGES:
            if stage in other.names:
                return adhoc.choice(
                    second, context, stage, f"stage {stage!r} of {shown}, a second Dockerfile"
                )
        last = other.names[-1]
        what = f"stage {last!r}" if last else "the unnamed last stage"
        return adhoc.choice(second, context, last, f"{what} of {shown}, a second Dockerfile")
    if found and found.names and test is not None:
        last = found.names[-1]
        if last != built_stage(test) and (last or "") not in DEV_STAGES:
            what = f"stage {last!r}" if last else "the unnamed last stage"
            reason = f"{what} of {_shown(settings, dockerfile)}: the last stage, which the test service "
            return adhoc.choice(dockerfile, context, last, reason + f"{test.name} does not build")
    return None


class _Adhoc:
    """Targets for stages that no configured target builds: built for the check, never stored."""

    def __init__(self, settings: Settings, repository: str | None, build_args: Mapping[str, str]) -> None:
        self.settings = settings
        self.repository = repository
        self.build_args = build_args

    def choice(self, dockerfile: Path, context: Path, stage: str | None, reason: str) -> ProdChoice:
        from ..key.spec import TargetSpec
        from ..refs import default_repository

        for target in self.settings.targets.values():  # a configured target builds it after all
            if target.spec.dockerfile == dockerfile and built_stage(target) == stage:
                return ProdChoice(target, f"target {target.name}: {reason}", True)
        shown = _shown(self.settings, dockerfile)
        name = f"{shown}:{stage}" if stage else shown
        project = str(self.settings.compose_data.get("name") or self.settings.root.name)
        tool_args = {str(k): str(v) for k, v in self.settings.tool.get("build-args", {}).items()}
        spec = TargetSpec(name=name, context=context, dockerfile=dockerfile, stage=stage,
                          build_args={**tool_args, **self.build_args})  # fmt: skip
        repo = self.repository or default_repository(project, stage or os.path.basename(shown))
        reason += "; built for this check only, not stored"
        return ProdChoice(Target(spec=spec, repository=repo), reason, False)


def _named(settings: Settings, adhoc: _Adhoc, test: Target | None, name: str, why: str) -> ProdChoice:
    """A target by name, else a stage of the test service's Dockerfile, else ``PATH[:STAGE]``."""
    if name in settings.targets:
        return ProdChoice(settings.targets[name], f"target {name} ({why})", True)
    dockerfile = test.spec.dockerfile if test is not None else _only_dockerfile(settings)
    context = test.spec.context if test is not None else settings.root
    if dockerfile is not None:
        found = _stages(dockerfile)
        if found and name.lower() in found.names:
            return adhoc.choice(dockerfile, context, name.lower(), f"stage {name!r} of "
                                f"{_shown(settings, dockerfile)} ({why})")  # fmt: skip
    path, _, stage = name.partition(":")
    candidate = (settings.root / path).resolve()
    if candidate.is_file():
        found = _stages(candidate)
        if found is None or not found.names:
            raise ConfigError(f"{candidate}: not a Dockerfile with a stage ({why}: {name!r})")
        if stage and stage.lower() not in found.names:
            stages = ", ".join(n for n in found.names if n) or "(no named stages)"
            raise ConfigError(f"{_shown(settings, candidate)} has no stage {stage!r}; stages: {stages}")
        chosen = stage.lower() if stage else found.names[-1]
        what = f"stage {chosen!r}" if chosen else "the unnamed last stage"
        return adhoc.choice(candidate, context, chosen, f"{what} of {_shown(settings, candidate)} ({why})")
    raise ConfigError(
        f"{why}: {name!r} is no target, no stage of the test service's Dockerfile and no Dockerfile; "
        f"targets: {', '.join(sorted(settings.targets)) or '(none)'}"
    )


def _one_of(settings: Settings, matches: list[Target], stage: str) -> ProdChoice:
    """Targets building the prod stage: one image if they build it alike (same Dockerfile, context
    and build args), else the user names one."""
    kinds = {(t.spec.dockerfile, t.spec.context, tuple(sorted(t.spec.build_args.items()))) for t in matches}
    if len(kinds) > 1:
        raise ConfigError(
            f"name the prod target (or set [tool.stagecache] prod-target): "
            f"{', '.join(t.name for t in matches)} build stage {stage!r} differently; "
            f"targets: {', '.join(sorted(settings.targets))}"
        )
    first = sorted(matches, key=lambda t: t.name)[0]
    what = "service" if first.service else "target"
    reason = f"{what} {first.name}: it builds stage {stage!r}"
    others = sorted(t.name for t in matches if t is not first)
    if others:
        reason += f" ({', '.join(others)} {'builds' if len(others) == 1 else 'build'} the same image)"
    return ProdChoice(first, reason, True)


def _only_dockerfile(settings: Settings) -> Path | None:
    found = {t.spec.dockerfile for t in settings.targets.values()}
    return found.pop() if len(found) == 1 else None


def second_dockerfiles(dockerfile: Path, context: Path, root: Path) -> list[Path]:
    """Dockerfiles beside the test one whose name says prod: ``Dockerfile.prod``, ``Dockerfile-release``,
    ``prod.Dockerfile``, ``Containerfile.production``… (in its folder, the context, the project)."""
    out: list[Path] = []
    for folder in dict.fromkeys([dockerfile.parent, context, root]):
        try:
            entries = sorted(folder.iterdir())
        except OSError:
            continue
        for path in entries:
            if path == dockerfile or path in out or not path.is_file():
                continue
            if _says_prod(path.name):
                out.append(path)
    return out


def _says_prod(filename: str) -> bool:
    import re

    words = re.split(r"[._-]+", filename.lower())
    kind = {"dockerfile", "containerfile"} & set(words)
    return bool(kind) and bool(set(words) & set(SECOND_DOCKERFILE_WORDS)) and len(words) <= 3


def _not_found(settings: Settings, detail: str) -> ConfigError:
    return ConfigError(
        f"cannot tell which image is prod: no target builds a stage named {', '.join(PROD_STAGES)}; "
        f"{detail}; name it (stagecache check-prod TARGET|STAGE|PATH[:STAGE]) or set "
        f"[tool.stagecache] prod-target; targets: {', '.join(sorted(settings.targets)) or '(none)'}"
    )
