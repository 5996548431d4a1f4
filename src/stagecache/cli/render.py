"""What the command line prints: progress on stderr, tables and JSON on stdout, sizes and dates.

Dates have one format everywhere, in tables and JSON alike: ``YYYY-MM-DDTHH:MM:SSZ`` (UTC).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Protocol, TextIO


class Output(Protocol):
    """Where results go: anything ``print`` and ``json.dump`` can write to."""

    def write(self, text: str, /) -> int: ...
    def flush(self) -> None: ...


class OutputClosed(Exception):
    """The reader of stdout went away (``stagecache store ls | head -1``): stop quietly."""


class GuardedOutput:
    """Stdout, with a closed pipe turned into :class:`OutputClosed`.

    Only a write to stdout means the reader went away: a ``BrokenPipeError`` from anywhere else (the
    engine's socket, a child's pipe) is a failure and reaches the error funnel as one."""

    def __init__(self, stream: Output) -> None:
        self.stream = stream

    def write(self, text: str, /) -> int:
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            raise OutputClosed from None

    def flush(self) -> None:
        try:
            self.stream.flush()
        except BrokenPipeError:
            raise OutputClosed from None


def stdout_fd(out: Output) -> int | None:
    """The descriptor of the process's stdout when ``out`` writes to it; None for anything else (a
    test's buffer, or a replaced ``sys.stdout`` with no descriptor)."""
    stream = out.stream if isinstance(out, GuardedOutput) else out
    real = sys.stdout
    try:
        fd = real.fileno()
    except (AttributeError, OSError, ValueError):
        return None
    return fd if stream is real else None


@contextlib.contextmanager
def children_to_stderr(out: Output) -> Iterator[None]:
    """For the block, what child processes write to stdout goes to stderr, so that stdout carries
    only what this process prints after it (``test --json``). Nothing changes when ``out`` is not
    the process's stdout (a test's buffer)."""
    fd = stdout_fd(out)
    if fd is None:
        yield
        return
    out.flush()  # what this process printed so far stays before the children's output
    saved = os.dup(fd)
    try:
        os.dup2(sys.stderr.fileno(), fd)
        yield
    finally:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        os.dup2(saved, fd)
        os.close(saved)


class TerminalReporter:
    """Progress on stderr: a line per step, a self-updating line for byte transfers on a terminal.

    Never raises for a closed stderr: progress is not worth failing the work (or its clean-up) for."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self._last_transfer = 0.0

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def _print(self, text: str, end: str = "\n") -> None:
        try:
            print(text, end=end, file=self.stream, flush=True)
        except BrokenPipeError:
            self.quiet = True

    def step(self, target: str, message: str) -> None:
        if not self.quiet:
            self._print(f"{self._paint(target, '1')}: {message}")

    def warn(self, message: str) -> None:
        self._print(f"{self._paint('warning', '33')}: {message}")

    def transfer(self, label: str, done: int, total: int | None) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_transfer < 0.1:
            return
        self._last_transfer = now
        of = f" of {total / 1e6:.0f} MB" if total else ""
        self._print(f"\r  {label}: {done / 1e6:.0f} MB{of}\033[K", end="\n" if finished else "")


# --- values -----------------------------------------------------------------------------------------------
def mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def short(key: str) -> str:
    """``sha256:`` and the first 12 hex digits: enough to tell keys apart in a table."""
    return key[:19]


# --- layouts ----------------------------------------------------------------------------------------------
def table(rows: Sequence[Sequence[str]], out: Output) -> None:
    """Rows in columns two spaces apart; the first row is the header."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


def dump_json(data: object, out: Output, *, sort_keys: bool = False) -> None:
    import json

    json.dump(data, out, indent=2, sort_keys=sort_keys)
    print(file=out)
