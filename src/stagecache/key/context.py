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

The library never reads file contents here: hashing is :mod:`stagecache.speed.digests`' job.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from functools import cached_property
from operator import attrgetter
from pathlib import Path
from typing import Literal, NamedTuple

from ..errors import ConfigError
from ..speed.digests import signature

__all__ = [
    "Entry",
    "IgnoreRules",
    "Kind",
    "Pattern",
    "compile_pattern",
    "find_ignore_file",
    "walk",
]

Kind = Literal["file", "dir", "symlink", "special"]

# Go's unicode.IsSpace set (Python's str.strip() would also strip \x1c-\x1f).
_GO_SPACE = (
    "\t\n\v\f\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)
# Characters that make an exception pattern more than a literal path prefix (fsutil's test).
_GLOB_CHARS = frozenset("*[]?^\\")
# Punctuation that patternmatcher escapes before building its regular expression.
_REGEX_ESCAPED = frozenset(".+()|{}$")
# ASCII sets of RE2's Perl classes (Python's \s would add \v).
_PERL_CLASSES = {"d": "0-9", "s": "\t\n\f\r ", "w": "0-9A-Za-z_"}
_CONTROL_ESCAPES = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class _BadPattern(Exception):
    """A pattern Docker rejects or stagecache cannot model: a reason and a fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


# --- which ignore file ---------------------------------------------------------------------------------


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
                test = _ignore_matcher(parsed)
            except _BadPattern as exc:
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
        return tuple(_without_trailing_glob(p.text) for p in self.patterns if p.exception)

    @cached_property
    def _literal_exceptions(self) -> bool:
        return not any(_GLOB_CHARS.intersection(text) for text in self._exceptions)

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


def _without_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


def _ignore_matcher(text: str) -> Callable[[str], bool]:
    """How patternmatcher tests one cleaned pattern: a literal, a prefix, a suffix or a regex."""
    _check_glob_syntax(text)
    kind = "exact"
    out = ["^"]
    pos, size, step = 0, len(text), 0
    while pos < size:
        ch = text[pos]
        pos += 1
        if ch == "*":
            if pos < size and text[pos] == "*":
                pos += 1
                if pos < size and text[pos] == "/":
                    pos += 1
                if pos == size:
                    if kind == "exact":
                        kind = "prefix"
                    else:
                        out.append(".*")
                        kind = "regex"
                else:
                    out.append("(.*/)?")
                    kind = "regex"
                if step == 0:
                    kind = "suffix"
            else:
                out.append("[^/]*")
                kind = "regex"
        elif ch == "?":
            out.append("[^/]")
            kind = "regex"
        elif ch in _REGEX_ESCAPED:
            out.append("\\" + ch)
        elif ch == "\\":
            # The syntax check guarantees a character follows.
            out.append("\\" + text[pos])
            pos += 1
            kind = "regex"
        elif ch in "[]":
            out.append(ch)
            kind = "regex"
        else:
            out.append(ch)
        step += 1

    if kind == "exact":
        return _equals(text)
    if kind == "prefix":
        return _startswith(text[:-2])
    if kind == "suffix":
        return _endswith(text[2:])
    out.append("$")
    regex = re.compile(_re2_to_python("".join(out)), re.ASCII)
    return lambda path: regex.match(path) is not None


def _equals(literal: str) -> Callable[[str], bool]:
    return lambda path: path == literal


def _startswith(prefix: str) -> Callable[[str], bool]:
    return lambda path: path.startswith(prefix)


def _endswith(suffix: str) -> Callable[[str], bool]:
    # "**/foo" also matches a top-level "foo".
    bare = suffix[1:] if suffix.startswith("/") else None
    return lambda path: path.endswith(suffix) or path == bare


def _check_glob_syntax(text: str) -> None:
    """Raise :class:`_BadPattern` where Go's ``filepath.Match`` reports ``ErrBadPattern`` (Unix rules)."""
    pos, size = 0, len(text)
    while pos < size:
        ch = text[pos]
        if ch == "\\":
            if pos + 1 == size:
                raise _BadPattern(
                    "a trailing `\\` escapes nothing", "remove it, or write `\\\\` for a literal backslash"
                )
            pos += 2
        elif ch == "[":
            pos += 1
            if pos < size and text[pos] == "^":
                pos += 1
            ranges = 0
            while True:
                if pos < size and text[pos] == "]" and ranges:
                    pos += 1
                    break
                pos = _class_char(text, pos, after_dash=False)
                if text[pos] == "-":
                    pos = _class_char(text, pos + 1, after_dash=True)
                ranges += 1
        else:
            pos += 1


def _class_char(text: str, pos: int, *, after_dash: bool) -> int:
    """Go's ``getEsc``: one (possibly escaped) class character; the class must go on after it."""
    unterminated = _BadPattern(
        "unterminated `[` character class",
        "close it with `]`, or write `\\[` for a literal `[`",
    )
    if pos >= len(text):
        raise unterminated
    if after_dash and text[pos] in "-]":
        raise _BadPattern(
            "a `-` in a `[` character class needs a character after it", "write `\\-` for a literal `-`"
        )
    if text[pos] == "-":
        raise _BadPattern(
            "a `[` character class range cannot start with `-`", "write `\\-` for a literal `-`"
        )
    if text[pos] == "]":
        raise _BadPattern(
            "empty `[]` character class", "put characters in it, or write `\\[` for a literal `[`"
        )
    if text[pos] == "\\":
        pos += 1
        if pos >= len(text):
            raise unterminated
    if "\udc80" <= text[pos] <= "\udcff":
        raise _BadPattern("a `[` character class holds bytes that are not UTF-8", "use `?` in its place")
    pos += 1
    if pos >= len(text):
        raise unterminated
    return pos


# --- from Docker's regular expression (RE2) to Python's ------------------------------------------------


def _re2_to_python(rx: str) -> str:
    """Translate the RE2 expression patternmatcher builds into an equivalent Python expression.

    Only Docker's own constructs (``^``, ``[^/]*``, ``[^/]``, ``(.*/)?``, ``.*``, ``$``) appear as
    operators; everything else came from the pattern and is escaped, so Python's extra syntax (nested
    set warnings, ``$`` before a final newline) cannot leak in.
    """
    out: list[str] = []
    pos, size = 0, len(rx)
    while pos < size:
        ch = rx[pos]
        if ch == "\\":
            out.append(_escape_outside_class(rx[pos + 1]))
            pos += 2
        elif ch == "[":
            text, pos = _re2_class(rx, pos + 1)
            out.append(text)
        elif ch in "^().*?":
            out.append(ch)
            pos += 1
        elif ch == "$":
            out.append(r"\Z")
            pos += 1
        else:
            out.append(re.escape(ch))
            pos += 1
    return "".join(out)


def _unsupported_escape(ch: str) -> _BadPattern:
    return _BadPattern(
        f"`\\{ch}` is a regular-expression escape in Docker's matcher, which stagecache does not model",
        "drop the backslash, or put `\\` only before punctuation",
    )


def _escape_outside_class(ch: str) -> str:
    if ch.isascii() and not ch.isalnum():
        return re.escape(ch)
    if ch in _CONTROL_ESCAPES:
        return re.escape(_CONTROL_ESCAPES[ch])
    if ch.lower() in _PERL_CLASSES:
        members = _PERL_CLASSES[ch.lower()]
        return f"[^{members}]" if ch.isupper() else f"[{members}]"
    if ch in "bBA":
        return "\\" + ch
    if ch == "z":
        return r"\Z"
    raise _unsupported_escape(ch)


def _re2_class(rx: str, pos: int) -> tuple[str, int]:
    """Parse an RE2 class whose ``[`` is just before ``pos``; return a Python class and the end."""
    negate = pos < len(rx) and rx[pos] == "^"
    if negate:
        pos += 1
    members: list[str] = []
    first = True
    while True:
        if pos >= len(rx):
            raise _BadPattern("unterminated `[` character class", "close it with `]`")
        if rx[pos] == "]" and not first:
            pos += 1
            break
        first = False
        if rx.startswith("[:", pos) and ":]" in rx[pos + 2 :]:
            raise _BadPattern(
                "`[:name:]` is a POSIX class in Docker's matcher, which stagecache does not model",
                "list the characters instead, e.g. `[a-z]`",
            )
        if rx[pos] == "\\" and rx[pos + 1] in _PERL_CLASSES:
            members.append(_PERL_CLASSES[rx[pos + 1]])
            pos += 2
            continue
        low, pos = _re2_class_char(rx, pos)
        if pos + 1 < len(rx) and rx[pos] == "-" and rx[pos + 1] != "]":
            high, pos = _re2_class_char(rx, pos + 1)
            if high < low:
                raise _BadPattern(
                    f"the range `{low}-{high}` is reversed, and Docker fails the build on it",
                    f"write `{high}-{low}`",
                )
            members.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            members.append(re.escape(low))
    return "[" + ("^" if negate else "") + "".join(members) + "]", pos


def _re2_class_char(rx: str, pos: int) -> tuple[str, int]:
    if pos >= len(rx):
        raise _BadPattern("unterminated `[` character class", "close it with `]`")
    if rx[pos] != "\\":
        return rx[pos], pos + 1
    ch = rx[pos + 1]
    if ch.isascii() and not ch.isalnum():
        return ch, pos + 2
    if ch in _CONTROL_ESCAPES:
        return _CONTROL_ESCAPES[ch], pos + 2
    raise _unsupported_escape(ch)


# --- COPY source wildcards -----------------------------------------------------------------------------


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Go's ``filepath.Match`` as a regular expression for ``fullmatch`` on a ``/``-separated path.

    This is how BuildKit expands COPY/ADD source wildcards (not how it reads ``.dockerignore``):
    ``*`` and ``?`` never match ``/``, ``[...]``/``[^...]`` are classes (which, as in Go, can match
    ``/``), ``\\`` escapes the next character. A malformed pattern raises :class:`ConfigError`.
    """
    try:
        _check_glob_syntax(pattern)
    except _BadPattern as exc:
        raise ConfigError(f"`{pattern}`: {exc.reason}: {exc.fix}") from None
    out: list[str] = []
    pos, size = 0, len(pattern)
    while pos < size:
        ch = pattern[pos]
        if ch == "*":
            out.append("[^/]*")
            pos += 1
        elif ch == "?":
            out.append("[^/]")
            pos += 1
        elif ch == "\\":
            out.append(re.escape(pattern[pos + 1]))
            pos += 2
        elif ch == "[":
            text, pos = _glob_class(pattern, pos + 1)
            out.append(text)
        else:
            out.append(re.escape(ch))
            pos += 1
    return re.compile("".join(out), re.DOTALL)


def _glob_class(pattern: str, pos: int) -> tuple[str, int]:
    """A ``filepath.Match`` class (already checked) whose ``[`` is just before ``pos``."""
    negate = pattern[pos] == "^"
    if negate:
        pos += 1
    members: list[str] = []
    ranges = 0
    while not (pattern[pos] == "]" and ranges):
        low, pos = _glob_class_char(pattern, pos)
        high = low
        if pattern[pos] == "-":
            high, pos = _glob_class_char(pattern, pos + 1)
        ranges += 1
        if low == high:
            members.append(re.escape(low))
        elif low < high:  # Go accepts a reversed range, which matches nothing; Python would refuse it
            members.append(f"{re.escape(low)}-{re.escape(high)}")
    body = "".join(members)
    if not body:  # only reversed ranges: nothing matches, or with ^ anything does
        return ("[\\s\\S]" if negate else "(?!)"), pos + 1
    return "[" + ("^" if negate else "") + body + "]", pos + 1


def _glob_class_char(pattern: str, pos: int) -> tuple[str, int]:
    if pattern[pos] == "\\":
        return pattern[pos + 1], pos + 2
    return pattern[pos], pos + 1


# --- the walk ------------------------------------------------------------------------------------------


class Entry:
    """One thing BuildKit sends from the context.

    ``path`` is relative to the context, ``/``-separated, without a leading ``./``. ``mode`` holds the
    permission bits, setuid/setgid/sticky included. ``size`` is the file size, the length of a link's
    target, or 0 for directories and special files. ``kind == "special"`` is a socket or a device
    node: it arrives in the image as an empty regular file with ``mode``, and must not be opened.

    ``content_refused`` marks a file that BuildKit lists but then refuses to read, because the
    ignore rules exclude it under the stricter test fsutil applies when opening files (see
    :meth:`IgnoreRules.excluded_on_open`). The image gets an empty file, or a stale copy when the
    engine's context cache still holds one with the same size and mtime: such a build is not
    reproducible. Adding ``!<path>`` as the last line of the ignore file fixes it.
    """

    __slots__ = ("content_refused", "kind", "link_target", "links", "mode", "path", "signature", "size")

    def __init__(
        self,
        path: str,
        kind: Kind,
        mode: int,
        size: int,
        link_target: str | None = None,
        content_refused: bool = False,
        signature: bytes | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.mode = mode
        self.size = size
        self.link_target = link_target
        self.content_refused = content_refused
        # a file's packed stat signature (stagecache.speed.digests.signature): the digest cache needs no
        # second stat. Not part of the entry's identity, nor is the file's number of hard links.
        self.signature = signature
        self.links = 1

    def _identity(self) -> tuple[object, ...]:
        return (self.path, self.kind, self.mode, self.size, self.link_target, self.content_refused)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())

    def __repr__(self) -> str:
        return "Entry({})".format(", ".join(map(repr, self._identity())))


_S_IFMT, _S_IFREG, _S_IFDIR = stat.S_IFMT(0o177777), stat.S_IFREG, stat.S_IFDIR


def walk(context: Path, rules: IgnoreRules, *, fifos: list[str] | None = None) -> list[Entry]:
    """The entries BuildKit transfers for ``context`` under ``rules``, sorted by path.

    Directories are entries (``COPY`` keeps empty ones). Symlinks are never followed. An excluded
    directory is not read at all unless an exception pattern could re-include something inside it.
    FIFOs are sent but dropped on the engine's side, so they are no entries; with ``fifos``, their paths
    are added to it (one can be all that puts an excluded directory in the context).
    """
    root = os.fspath(context)
    if not os.path.isdir(root):
        raise ConfigError(f"{context}: the build context is not a directory: point the target at one")
    walker = _Walker(rules, root, fifos)
    ancestors = [False] * len(rules.patterns) if rules._exceptions else None
    walker.walk(None, root, "", None, ancestors, [])
    walker.out.sort(key=attrgetter("path"))
    return walker.out


# Directories are opened, and their entries stat'ed relative to them (fstatat): the kernel resolves one
# name per stat instead of the whole path, a tenth of a large walk.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)


class _Pending:
    """An excluded directory that is sent only if something below it is."""

    __slots__ = ("entry", "sent")

    def __init__(self, entry: Entry) -> None:
        self.entry = entry
        self.sent = False


class _Walker:
    """fsutil's filtered walk over one context."""

    def __init__(self, rules: IgnoreRules, root: str, fifos: list[str] | None) -> None:
        self.rules = rules
        self.tests = rules._tests
        self.root = root
        self.out: list[Entry] = []
        self.fifos = fifos

    def walk(
        self,
        parent: int | None,
        name: str,
        prefix: str,
        state: list[bool] | None,
        ancestors: list[bool] | None,
        pending: list[_Pending],
    ) -> None:
        """Walk the directory ``name`` of the open directory ``parent`` (context path ``prefix``).

        ``state`` is what the directory got from the matcher; ``ancestors[i]`` says whether pattern
        ``i`` matches the directory or one above it (kept only when there are exceptions, for the
        open-time test); ``pending`` are the excluded directories above it not sent yet.
        """
        try:
            fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            return  # removed while we walked
        except PermissionError as exc:
            self._unreadable(prefix, pending, exc)
            return
        try:
            try:
                with os.scandir(fd) as it:
                    children = list(it)
            except PermissionError as exc:
                self._unreadable(prefix, pending, exc)
                return
            # The hot loop of a key: one pass per context entry, so it inlines what a helper would do.
            rules = self.rules
            filtering = bool(rules.patterns)
            out = self.out
            for child in children:
                path = prefix + child.name
                try:
                    st = child.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                mode = st.st_mode
                fmt = mode & _S_IFMT
                child_state: list[bool] | None = None
                if filtering:
                    excluded, child_state = rules._step(path, state)
                    if excluded:
                        if fmt == _S_IFDIR and rules.may_reinclude_below(path):
                            waiting_dir = _Pending(Entry(path, "dir", mode & 0o7777, 0))
                            below = self._ancestors(path, ancestors)
                            self.walk(fd, child.name, path + "/", child_state, below, [*pending, waiting_dir])
                        continue
                if pending:
                    for waiting in pending:
                        if not waiting.sent:
                            out.append(waiting.entry)
                            waiting.sent = True
                if fmt == _S_IFREG:
                    sig = signature(st)
                    refused = ancestors is not None and self._refused(path, ancestors)
                    item = Entry(path, "file", mode & 0o7777, st.st_size, None, refused, sig)
                    if st.st_nlink > 1:
                        item.links = st.st_nlink
                    out.append(item)
                elif fmt == _S_IFDIR:
                    out.append(Entry(path, "dir", mode & 0o7777, 0))
                    self.walk(fd, child.name, path + "/", child_state, self._ancestors(path, ancestors), [])
                elif (entry := _other_entry(fd, child.name, path, st)) is not None:
                    out.append(entry)
                elif self.fifos is not None and stat.S_ISFIFO(mode):
                    self.fifos.append(path)
        finally:
            os.close(fd)

    def _unreadable(self, prefix: str, pending: list[_Pending], exc: OSError) -> None:
        if pending:  # BuildKit ignores unreadable excluded directories
            return
        where = os.path.normpath(os.path.join(self.root, prefix))
        raise ConfigError(
            f"{where}: cannot read this directory of the build context ({exc.strerror}): "
            "make it readable, or exclude it in .dockerignore"
        ) from exc

    def _ancestors(self, path: str, ancestors: list[bool] | None) -> list[bool] | None:
        if ancestors is None:
            return None
        return [above or test(path) for above, (_, test) in zip(ancestors, self.tests, strict=True)]

    def _refused(self, path: str, ancestors: list[bool]) -> bool:
        """``excluded_on_open`` for a file whose directory's ``ancestors`` vector is known."""
        matched = False
        for above, (exception, test) in zip(ancestors, self.tests, strict=True):
            if exception == matched and (above or test(path)):
                matched = not exception
        return matched


def _other_entry(fd: int, name: str, path: str, st: os.stat_result) -> Entry | None:
    """The entry of something that is neither a regular file nor a directory (``name`` in ``fd``)."""
    mode = st.st_mode
    perms = stat.S_IMODE(mode)
    if stat.S_ISLNK(mode):
        try:
            target = os.readlink(name, dir_fd=fd)
        except FileNotFoundError:
            return None
        return Entry(path, "symlink", perms, st.st_size, target)
    if stat.S_ISSOCK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return Entry(path, "special", perms, 0)
    return None  # a FIFO: sent, then dropped on the engine's side
