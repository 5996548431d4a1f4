"""Which target a command works on when the user names none.

The rule is the same for every role: the name given on the command line, else the one
``[tool.stagecache]`` names for the role, else the one target built for the role's stage (``prod``
or ``dev``, compared without case). More than one candidate, or none, is a :class:`ConfigError` that
lists the targets, never a guess.
"""

from __future__ import annotations

from typing import NamedTuple

from ..errors import ConfigError
from .settings import Settings, Target


class Role(NamedTuple):
    setting: str  # the [tool.stagecache] key that names the target for this role
    stage: str  # the Dockerfile stage a target of this role is built for
    what: str  # how a message names it


TEST_SERVICE = Role("test-service", "dev", "test service")
RUN_SERVICE = Role("run-service", "prod", "service to run")
PROD_TARGET = Role("prod-target", "prod", "prod target")


def built_for_stage(settings: Settings, stage: str) -> list[Target]:
    """The targets built for the stage ``stage`` (case-insensitive), in the order of the settings."""
    return [t for t in settings.targets.values() if (t.spec.stage or "").lower() == stage.lower()]


def pick(settings: Settings, given: str | None, role: Role) -> Target:
    """The target for ``role``: as named, else as configured, else the one built for its stage."""
    name = given or settings.tool.get(role.setting)
    if name:
        (target,) = settings.select([str(name)])
        return target
    matches = built_for_stage(settings, role.stage)
    if len(matches) == 1:
        return matches[0]
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
    """The target whose size ``check-prod`` shows beside prod's: the first built for ``dev``."""
    matches = built_for_stage(settings, "dev")
    return matches[0] if matches else None


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
