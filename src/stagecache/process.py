"""The one choke point for child processes: every command stagecache starts goes through here.

:func:`run` runs a command to its end (the docker CLI, compose, git); :func:`spawn` starts one that
runs beside stagecache (``docker load`` fed a stream, hash helpers, ``git`` while a key is computed, a
context watcher). Both log the command with ``-v`` and say in one line when the program is missing.
``subprocess`` is imported on first use: a warm hit starts no process at all.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

from . import trace
from .errors import CommandError, EngineError

if TYPE_CHECKING:
    import subprocess

# subprocess.PIPE and subprocess.DEVNULL, for callers of spawn() that need not import subprocess
# (tests/unit/test_process.py checks that they still are).
PIPE = -1
DEVNULL = -3


class Completed(NamedTuple):
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        stdin: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Completed: ...


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    stdin: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Completed:
    """Run a command to its end. With ``capture=False`` its output goes to the user's terminal (build
    progress). ``check``: a non-zero exit raises :class:`CommandError` with the tail of stderr."""
    trace.debug("$ " + " ".join(argv))
    import subprocess

    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EngineError(f"{argv[0]!r} is not installed or not on PATH") from exc
    out = proc.stdout.decode(errors="replace") if capture else ""
    err = proc.stderr.decode(errors="replace") if capture else ""
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, err)
    return Completed(list(argv), proc.returncode, out, err)


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start a command that runs beside this process (``subprocess.Popen`` keywords); OSError as Popen
    raises it when it cannot start."""
    trace.debug("$ " + " ".join(argv) + " &")
    import subprocess

    return subprocess.Popen(list(argv), **popen)


def wait(proc: subprocess.Popen[Any], timeout: float | None) -> bool:
    """Wait for a spawned process to end; False when it is still running after ``timeout`` seconds."""
    import subprocess

    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True
