"""One exception hierarchy for the whole library.

Every error a user can cause or meet derives from :class:`StagecacheError`. The CLI turns them into a
one-line message and an exit code in one place (``stagecache.cli.main``); the library itself never prints
and never exits.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence


class ExitCode(enum.IntEnum):
    """Process exit codes, as the CLI returns them."""

    OK = 0
    FAILED = 1  # the work itself failed: a build, a test run, a dev package found in prod
    USAGE = 2  # bad usage, bad input, or an environment that cannot do the work
    INTERRUPTED = 130  # Ctrl-C


class StagecacheError(Exception):
    """Base class. ``exit_code`` says how the CLI ends when this error reaches it."""

    exit_code: ExitCode = ExitCode.USAGE


class ConfigError(StagecacheError):
    """Bad configuration or input: a file, a line and what to do about it belong in the message."""


class DockerfileError(ConfigError):
    """A Dockerfile that cannot be parsed or that names something that does not exist."""

    def __init__(self, path: str, line: int | None, message: str) -> None:
        self.path = path
        self.line = line
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}")


class EngineError(StagecacheError):
    """The Docker engine is missing, unreachable, or lacks a plugin we need."""


class CommandError(StagecacheError):
    """An external command failed. Carries argv, exit code and the tail of its stderr."""

    exit_code = ExitCode.FAILED

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        from .redaction import argv as shown  # a secret build arg's value is never in a message
        from .redaction import text

        self.argv = shown(argv)
        self.returncode = returncode
        self.stderr = stderr = text(stderr)
        tail = " | ".join(line for line in stderr.strip().splitlines()[-3:] if line.strip())
        super().__init__(f"`{' '.join(self.argv[:4])}…` exited {returncode}" + (f": {tail}" if tail else ""))


class BuildError(StagecacheError):
    """A target failed to build."""

    exit_code = ExitCode.FAILED

    def __init__(self, target: str, log_tail: str) -> None:
        from .redaction import text  # a secret build arg's value is never in a message

        self.target = target
        self.log_tail = log_tail = text(log_tail)
        last = log_tail.strip().splitlines()[-1] if log_tail.strip() else "see the build output above"
        super().__init__(f"target {target!r} failed to build: {last}")


class StoreError(StagecacheError):
    """The store cannot be used: not writable, full, or an entry is damaged."""
