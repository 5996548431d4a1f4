"""The one choke point for child processes: every command stagecache starts goes through here.

:func:`run` runs a command to its end (the docker CLI, compose, git); :func:`spawn` starts one that
runs beside stagecache (``docker load`` fed a stream, hash helpers, ``git`` while a key is computed, a
context watcher). Both log the command with ``-v`` and say in one line when the program is missing,
and on Linux a child dies with stagecache (``PR_SET_PDEATHSIG``), even when stagecache is killed.
``subprocess`` is imported on first use: a warm hit starts no process at all.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NamedTuple, Protocol

from . import redaction, trace
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


def _with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the child die with this process (Linux ``PR_SET_PDEATHSIG``): a
    ``kill -9`` of stagecache must not leave a ``docker buildx build`` or ``docker save`` running on.
    SIGTERM, so that the docker CLI cancels its build or save. None where the call is not available."""
    if sys.platform != "linux":
        return None
    import ctypes  # resolved here, in the parent: the child only calls it

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def die_with_parent() -> None:
        prctl(1, 15, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGTERM
        if os.getppid() != parent:  # the parent died before the call: nobody would signal us
            os._exit(1)

    return die_with_parent


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
    progress). ``check``: a non-zero exit raises :class:`CommandError` with the tail of stderr.
    ``env`` is added to this process's environment for the command (secret build args travel there,
    not in its argv, which any user can read in ``ps``); the log shows its names, not secret values."""
    trace.debug("$ " + " ".join(redaction.argv(argv, env)))
    import subprocess

    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            list(argv),
            preexec_fn=_with_parent(),
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


def run_masked(argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Completed:
    """Run a command to its end with its output (stdout and stderr together) shown on stderr line by
    line through :func:`stagecache.redaction.text`: for a build whose progress would show a secret
    build arg's value (BuildKit names a ``RUN`` step by its command with the args expanded). Returns
    the exit code, and the last lines of the output as ``stderr``."""
    import collections
    import subprocess

    trace.debug("$ " + " ".join(redaction.argv(argv, env)))
    try:
        proc = subprocess.Popen(
            list(argv),
            preexec_fn=_with_parent(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env} if env else None,
        )
    except FileNotFoundError as exc:
        raise EngineError(f"{argv[0]!r} is not installed or not on PATH") from exc
    tail: collections.deque[str] = collections.deque(maxlen=40)
    assert proc.stdout is not None
    try:
        for raw in proc.stdout:
            line = redaction.text(raw.decode(errors="replace"))
            sys.stderr.write(line)
            sys.stderr.flush()
            tail.append(line)
    finally:
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.kill()
        proc.stdout.close()
        proc.wait()
    return Completed(list(argv), proc.returncode, "", "".join(tail))


def spawn(argv: Sequence[str], **popen: Any) -> subprocess.Popen[Any]:
    """Start a command that runs beside this process (``subprocess.Popen`` keywords); OSError as Popen
    raises it when it cannot start."""
    trace.debug("$ " + " ".join(redaction.argv(argv)) + " &")
    import subprocess

    popen.setdefault("preexec_fn", _with_parent())
    return subprocess.Popen(list(argv), **popen)


def wait(proc: subprocess.Popen[Any], timeout: float | None) -> bool:
    """Wait for a spawned process to end; False when it is still running after ``timeout`` seconds."""
    import subprocess

    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        return False
    return True
