"""Ignore-file patterns as Docker compiles them: moby's ``patternmatcher`` glob-to-regex translation,
Go's ``filepath.Match`` syntax checks, and RE2 escapes in their Python spelling.

:mod:`stagecache.key.ignore` says which patterns apply and in what order; this module says what one
pattern matches. See that module's docstring for the rules reproduced.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from ..errors import ConfigError

GLOB_CHARS = frozenset("*[]?^\\")
# Punctuation that patternmatcher escapes before building its regular expression.
_REGEX_ESCAPED = frozenset(".+()|{}$")
# ASCII sets of RE2's Perl classes (Python's \s would add \v).
_PERL_CLASSES = {"d": "0-9", "s": "\t\n\f\r ", "w": "0-9A-Za-z_"}
_CONTROL_ESCAPES = {"a": "\a", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}


class BadPattern(Exception):
    """A pattern Docker rejects or stagecache cannot model: a reason and a fix."""

    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


# --- which ignore file ---------------------------------------------------------------------------------


def without_trailing_glob(text: str) -> str:
    return text.removesuffix("/**").removesuffix("/*")


def ignore_matcher(text: str) -> Callable[[str], bool]:
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
    """Raise :class:`BadPattern` where Go's ``filepath.Match`` reports ``ErrBadPattern`` (Unix rules)."""
    pos, size = 0, len(text)
    while pos < size:
        ch = text[pos]
        if ch == "\\":
            if pos + 1 == size:
                raise BadPattern(
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
    unterminated = BadPattern(
        "unterminated `[` character class",
        "close it with `]`, or write `\\[` for a literal `[`",
    )
    if pos >= len(text):
        raise unterminated
    if after_dash and text[pos] in "-]":
        raise BadPattern(
            "a `-` in a `[` character class needs a character after it", "write `\\-` for a literal `-`"
        )
    if text[pos] == "-":
        raise BadPattern("a `[` character class range cannot start with `-`", "write `\\-` for a literal `-`")
    if text[pos] == "]":
        raise BadPattern(
            "empty `[]` character class", "put characters in it, or write `\\[` for a literal `[`"
        )
    if text[pos] == "\\":
        pos += 1
        if pos >= len(text):
            raise unterminated
    if "\udc80" <= text[pos] <= "\udcff":
        raise BadPattern("a `[` character class holds bytes that are not UTF-8", "use `?` in its place")
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


def _unsupported_escape(ch: str) -> BadPattern:
    return BadPattern(
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
            raise BadPattern("unterminated `[` character class", "close it with `]`")
        if rx[pos] == "]" and not first:
            pos += 1
            break
        first = False
        if rx.startswith("[:", pos) and ":]" in rx[pos + 2 :]:
            raise BadPattern(
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
                raise BadPattern(
                    f"the range `{low}-{high}` is reversed, and Docker fails the build on it",
                    f"write `{high}-{low}`",
                )
            members.append(f"{re.escape(low)}-{re.escape(high)}")
        else:
            members.append(re.escape(low))
    return "[" + ("^" if negate else "") + "".join(members) + "]", pos


def _re2_class_char(rx: str, pos: int) -> tuple[str, int]:
    if pos >= len(rx):
        raise BadPattern("unterminated `[` character class", "close it with `]`")
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
    except BadPattern as exc:
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
