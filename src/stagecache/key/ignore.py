"""The build context as BuildKit sends it: which ignore file applies, what it excludes, what is sent.

Docker does not match ``.dockerignore`` lines with ``fnmatch`` or ``.gitignore`` rules. Each line is
cleaned like a Go path, turned into a regular expression by moby's ``patternmatcher``, and applied by
the walker of ``tonistiigi/fsutil`` on the client side, which decides what crosses into the build. This
module reproduces that pipeline, quirks included, because a cache key must cover exactly what a
target can copy:

* ``*`` and ``?`` stay inside one path component; ``**`` spans any number of them, none included
  (``**/__pycache__`` also matches a top-level ``__pycache__``). A pattern that starts with ``**`` and
  has no other wildcard is a plain suffix test: ``**.pyc`` excludes ``a/b/x.pyc``.
* A pattern matching a directory excludes everything below it, and the last pattern that matches wins.
  The walker carries each pattern's result from a directory down to its children, so a later ``!a``
  does not bring back ``a/b`` once ``a/b`` itself was excluded by ``a/b``.
* ``\\`` + punctuation is that character. ``\\`` + a letter is a regular-expression escape in Docker
  (``file\\d`` excludes ``file5``, not ``filed``): ``\\d \\s \\w`` (and their capitals), ``\\a \\f
  \\n \\r \\t \\v``, ``\\b \\B \\A \\z`` are reproduced; any other is refused with a
  :class:`ConfigError` (Docker either rejects it or gives it a meaning not modelled here).
* An excluded directory is skipped whole unless an exception (``!pattern``) could re-include something
  below it. When it is walked, it is sent only if something inside it is; a directory that is not
  excluded is always sent, even when the ignore file emptied it.
* Symlinks are sent as links (their target string), never followed. Sockets and device nodes arrive
  in the image as empty regular files with the same permission bits (kind ``"special"``); FIFOs are
  dropped, though a re-included FIFO still brings its excluded parent directories along.
* When BuildKit reads a file's content it tests the path once more, with patternmatcher's older
  rule (every pattern tried on every parent directory). Where the two rules disagree the file is
  listed but its content is refused: :attr:`Entry.content_refused` flags it.

What one pattern matches is :mod:`stagecache.key.patterns`; the walk that applies the rules is
:mod:`stagecache.key.walk`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from typing import NamedTuple

from ..errors import ConfigError
from .patterns import GLOB_CHARS, BadPattern, ignore_matcher, without_trailing_glob

# Go's unicode.IsSpace set (Python's str.strip() would also strip \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# Characters that make an exception pattern more than a literal path prefix (fsutil's test).


def find_ignore_file(context: Path, dockerfile: Path) -> Path | None:
    """The ignore file BuildKit reads: ``<Dockerfile>.dockerignore``, else ``<context>/.dockerignore``.

    ``build/Dockerfile`` is paired with ``build/Dockerfile.dockerignore`` (next to the Dockerfile, under
    the Dockerfile's own name). When that file exists, the context's ``.dockerignore`` is not read.
    """
    beside = dockerfile.with_name(dockerfile.name + ".dockerignore")
    if beside.is_file():
        return beside
    default = context / ".dockerignore"
    return default if default.is_file() else None


# --- patterns ------------------------------------------------------------------------------------------


class Pattern(NamedTuple):
    """One ignore pattern as Docker keeps it: cleaned, without its leading ``!``. ``test`` is the
    compiled matcher; two patterns are equal when their text, kind and line are."""

    text: str
    exception: bool
    line: int
    test: Callable[[str], bool]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pattern) and self[:3] == other[:3]

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self[:3])

    def matches(self, path: str) -> bool:
        """Whether the pattern itself matches ``path`` (no parent directories, no other patterns)."""
        return self.test(path)


class IgnoreRules:
    """The patterns of one ignore file, applied as BuildKit's context walker applies them."""

    def __init__(self, patterns: tuple[Pattern, ...] = (), source: str = ".dockerignore") -> None:
        self.patterns = patterns
        self.source = source

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IgnoreRules) and (self.patterns, self.source) == (
            other.patterns,
            other.source,
        )

    def __hash__(self) -> int:
        return hash((self.patterns, self.source))

    def __repr__(self) -> str:
        return f"IgnoreRules({self.patterns!r}, {self.source!r})"

    @classmethod
    def parse(cls, text: str, source: str = ".dockerignore") -> IgnoreRules:
        """Read ignore-file text. A bad pattern raises :class:`ConfigError` naming ``source:line``."""
        patterns: list[Pattern] = []
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        for number, raw in enumerate(lines, start=1):
            line = raw[:-1] if raw.endswith("\r") else raw
            if number == 1:
                line = line.removeprefix("\ufeff")
            if line.startswith("#"):  # only in the first column: "  # x" is a pattern
                continue
            parsed = _read_line(line)
            if parsed is None:
                continue
            where = f"{source}:{number}"
            exception = parsed.startswith("!")
            if exception:
                parsed = parsed[1:]
                if not parsed:
                    raise ConfigError(
                        f"{where}: `!` has no pattern after it: write the path to re-include, "
                        "e.g. `!docs/keep.md`, or delete the line"
                    )
            try:
                test = ignore_matcher(parsed)
            except BadPattern as exc:
                raise ConfigError(f"{where}: `{line.strip(_GO_SPACE)}`: {exc.reason}: {exc.fix}") from None
            patterns.append(Pattern(parsed, exception, number, test))
        return cls(tuple(patterns), source)

    @classmethod
    def load(cls, path: Path | None) -> IgnoreRules:
        """Read an ignore file; ``None`` (no ignore file) gives rules that exclude nothing."""
        if path is None:
            return cls()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read the ignore file ({exc.strerror}): make it readable"
            ) from exc
        return cls.parse(data.decode("utf-8", "surrogateescape"), str(path))

    def excluded(self, relpath: str) -> bool:
        """Whether BuildKit leaves ``relpath`` (relative to the context, ``/``-separated) out of the context.

        A path below an excluded directory is excluded unless an exception re-includes it.
        """
        parts = [p for p in relpath.strip("/").split("/") if p not in ("", ".")]
        if not parts or not self.patterns:
            return False
        state: list[bool] | None = None
        result = False
        for depth in range(1, len(parts) + 1):
            result, state = self._step("/".join(parts[:depth]), state)
        return result

    def excluded_on_open(self, relpath: str) -> bool:
        """The test fsutil applies when BuildKit asks for a file's content (``MatchesOrParentMatches``).

        Each pattern is tried on the path and on every directory above it, with no results carried
        down. It usually agrees with :meth:`excluded`; when it excludes a path that :meth:`excluded`
        keeps, BuildKit lists the file but sends no content (see :attr:`Entry.content_refused`).
        """
        parts = [p for p in relpath.strip("/").split("/") if p not in ("", ".")]
        if not parts:
            return False
        above = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        path = "/".join(parts)
        matched = False
        for exception, test in self._tests:
            if exception == matched and (test(path) or any(test(a) for a in above)):
                matched = not exception
        return matched

    def may_reinclude_below(self, dirpath: str) -> bool:
        """Whether BuildKit must walk into excluded directory ``dirpath``: an exception may match below it.

        This is fsutil's test, which is conservative: every exception with a wildcard (other than a
        trailing ``/*`` or ``/**``) makes every excluded directory worth walking.
        """
        if not self._exceptions:
            return False
        if not self._literal_exceptions:
            return True
        prefix = dirpath.strip("/") + "/"
        return any((literal + "/").startswith(prefix) for literal in self._exceptions)

    @cached_property
    def _exceptions(self) -> tuple[str, ...]:
        return tuple(without_trailing_glob(p.text) for p in self.patterns if p.exception)

    @cached_property
    def _literal_exceptions(self) -> bool:
        return not any(GLOB_CHARS.intersection(text) for text in self._exceptions)

    @cached_property
    def _tests(self) -> tuple[tuple[bool, Callable[[str], bool]], ...]:
        return tuple((p.exception, p.test) for p in self.patterns)

    def _step(self, path: str, parent: list[bool] | None) -> tuple[bool, list[bool]]:
        """patternmatcher's ``MatchesUsingParentResults``: ``parent`` is what the parent directory got.

        A pattern that matched the parent counts as matching here; otherwise it is tried on ``path``
        only when it could change the running answer. ``parent`` is ``None`` for top-level paths.
        """
        matched = False
        flags = [False] * len(self.patterns)
        for index, (exception, test) in enumerate(self._tests):
            inherited = parent is not None and parent[index]
            if not inherited and (exception != matched or not test(path)):
                continue
            flags[index] = True
            matched = not exception
        return matched, flags


def _read_line(line: str) -> str | None:
    """One line as Docker's ignore-file reader and pattern compiler leave it; ``None`` when blank."""
    pattern = line.strip(_GO_SPACE)
    if not pattern:
        return None
    invert = pattern.startswith("!")
    if invert:
        pattern = pattern[1:].strip(_GO_SPACE)
    if pattern:
        pattern = _go_clean(pattern)
        if len(pattern) > 1 and pattern.startswith("/"):
            pattern = pattern[1:]
    if invert:
        pattern = "!" + pattern
    # The matcher trims and cleans once more: this only turns "!/" into "!".
    return _go_clean(pattern.strip(_GO_SPACE))


def _go_clean(path: str) -> str:
    """Go's ``filepath.Clean`` on Unix (``posixpath.normpath`` keeps a leading ``//``)."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
        else:
            parts.append(part)
    joined = "/".join(parts)
    if rooted:
        return "/" + joined
    return joined or "."
