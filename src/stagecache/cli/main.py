"""``stagecache``: read the command line, run one command, turn what goes wrong into a message.

This is the one error funnel (exit codes as :class:`~stagecache.errors.ExitCode` says):

* a :class:`~stagecache.errors.StagecacheError`: ``stagecache: error: …`` and the error's exit code;
* Ctrl-C: ``stagecache: interrupted``, 130;
* an ``OSError`` (a file or directory the environment does not let us use): its message, 2;
* stdout closed by its reader (``stagecache store ls | head -1``): nothing more is printed, 0;
* a usage error: argparse prints the usage of the command it is about, 2.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .. import trace
from ..errors import ExitCode, StagecacheError
from . import parser

if TYPE_CHECKING:
    import argparse

    from ..engine.base import Engine
    from .context import Context
    from .render import Output


def main(argv: Sequence[str] | None = None, out: Output | None = None, engine: Engine | None = None) -> int:
    """Run ``stagecache`` with ``argv`` (default: ``sys.argv[1:]``); results go to ``out`` (stdout).

    ``engine`` replaces the local Docker engine (tests)."""
    # A key allocates an object or three per context file and frees almost none before it is done: the
    # cyclic collector's default pace (every 700 allocations) costs a tenth of a 20,000-file key while
    # finding nothing. Collect less often, as mypy does.
    gc.set_threshold(100_000, 20, 20)
    stream = out if out is not None else sys.stdout
    try:
        try:
            args = parser.parse(sys.argv[1:] if argv is None else argv)
        except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except BrokenPipeError:  # `stagecache --help | head -1`
            _drop_stdout(stream)
            return ExitCode.OK
        return _run(args, stream, engine)
    except StagecacheError as exc:
        _say(f"stagecache: error: {exc}")
        return int(exc.exit_code)
    except KeyboardInterrupt:
        _say("stagecache: interrupted")
        return int(ExitCode.INTERRUPTED)
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        _say(f"stagecache: error: {where}{exc.strerror or exc}")
        return int(ExitCode.USAGE)


def _run(args: argparse.Namespace, stream: Output, engine: Engine | None) -> int:
    from .context import Context
    from .render import GuardedOutput, OutputClosed, TerminalReporter

    trace.enabled = args.verbose
    out = GuardedOutput(stream)
    ctx = Context(args, out, TerminalReporter(sys.stderr, quiet=args.quiet), engine)
    try:
        code = int(handler(args.command)(args, ctx))
        ctx.close()  # the saves into the store end (or fail, said in a line) before the command does
        out.flush()
    except OutputClosed:
        ctx.close()
        _drop_stdout(stream)
        return ExitCode.OK
    except KeyboardInterrupt:
        ctx.close(cancel=True)  # a save in progress stops between two blobs and records nothing
        raise
    except BaseException:
        ctx.close()  # a failed build does not undo the saves of the targets built before it
        raise
    return code


def handler(command: str) -> Callable[[argparse.Namespace, Context], int]:
    """The function that runs ``command``; its module is imported now, not before."""
    module, name = parser.HANDLERS[command]
    function: Callable[[argparse.Namespace, Context], int] = getattr(
        importlib.import_module(f"{__package__}.commands.{module}"), name
    )
    return function


def _drop_stdout(stream: Output) -> None:
    """After the reader of stdout went away: what is still buffered goes nowhere, so that Python's
    own flush at exit does not fail and print a traceback."""
    from .render import stdout_fd

    fd = stdout_fd(stream)
    if fd is not None:
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), fd)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):  # stderr gone too: the exit code is all that is left to say it
        print(message, file=sys.stderr)
