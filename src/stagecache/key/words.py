"""Dockerfile words exactly as BuildKit's Dockerfile frontend reads them.

BuildKit's parser splits an instruction into words and leaves their quotes, escapes and variables alone
(``COPY "s*" /app/`` gives the word ``"s*"``); its frontend then runs each word of ``COPY``, ``ADD``,
``ENV``, ``ARG``, ``LABEL``, ``WORKDIR``, ``USER``, ``VOLUME``, ``EXPOSE``, ``STOPSIGNAL``, ``FROM`` and
of ``RUN --mount`` options through a small shell lexer (``frontend/dockerfile/shell/lex.go``) against
the variables in force. The grammar package wraps the parser only and has no call for that lexer, so
this module is a port of it, line for line, in the three generations an engine may run:

* ``"0.8"`` (BuildKit 0.8 to 0.11: Docker 20.10 to 24): ``$V``, ``${V}``, ``${V:-w}``, ``${V:+w}``,
  ``${V:?w}``, ``${V?w}``;
* ``"0.12"`` (Docker 25) adds ``${V-w}`` and ``${V+w}``;
* ``"0.13"`` (Docker 26) adds ``${V#p}``, ``${V##p}``, ``${V%p}``, ``${V%%p}``, ``${V/p/r}``, ``${V//p/r}``.

A word BuildKit cannot read raises :class:`WordError` with BuildKit's own reason (the build would fail
on it too). ``tests/unit/test_words_fuzz.py`` checks the port against the grammar package's copy of the
lexer (it reads heredoc names with it) over generated words, and ``tests/integration/test_key_findings.py``
against real builds.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

from .wordpatterns import (
    Scanner,
    WordError,
    csv_fields,
    go_replace_all,
    shell_pattern,
    trim_prefix,
    trim_suffix,
)

__all__ = ["DEFAULT_PATH", "LATEST", "Frontend", "Lexer", "Word", "WordError", "csv_fields", "process_word"]

DIALECTS = ("0.8", "0.12", "0.13")
LATEST = "0.13"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"  # BuildKit's, when unset

# Go's unicode.IsSpace: Latin-1 spaces, then the White_Space property.
_SPACES = frozenset("\t\n\v\f\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | frozenset(
    chr(c) for c in range(0x2000, 0x200B)
)
_SPECIAL_PARAMS = frozenset("@*#?-$!0")


class Frontend(NamedTuple):
    """How the engine's BuildKit reads words: the lexer's dialect (:mod:`stagecache.key.words`) and
    whether ``RUN --mount`` values are expanded (from BuildKit 0.9; 0.8 takes them literally)."""

    lexer: str = LATEST
    expands_mounts: bool = True


def frontend_for(docker_version: str) -> Frontend:
    """The frontend built into a Docker engine of this version (one we cannot read: the latest)."""
    match = re.match(r"(\d+)\.", docker_version or "")
    major = int(match.group(1)) if match else 1000
    if major <= 20:
        return Frontend("0.8", expands_mounts=False)  # 20.10: BuildKit 0.8
    if major <= 24:
        return Frontend("0.8")  # 23, 24: BuildKit 0.10, 0.11
    if major == 25:
        return Frontend("0.12")
    return Frontend()


class Word(NamedTuple):
    """A processed word and the variables it named: set (``used``) and not set (``unset``)."""

    text: str
    used: frozenset[str]
    unset: frozenset[str]


def process_word(word: str, env: Mapping[str, str], escape: str = "\\", dialect: str = LATEST) -> Word:
    """``Lex.ProcessWord``: quotes removed, escapes applied, variables expanded."""
    sw = _ShellWord(word, env, Lexer(escape, dialect=dialect))
    text, _ = sw.process()
    return Word(text, frozenset(sw.used), frozenset(sw.unset))


class Lexer:
    """``shell.Lex`` with its options; :meth:`word` and :meth:`words` are ProcessWord(s)."""

    def __init__(
        self,
        escape: str = "\\",
        *,
        dialect: str = LATEST,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        if dialect not in DIALECTS:
            raise ValueError(f"unknown dialect {dialect!r}")
        self.escape = escape
        self.dialect = dialect
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def word(self, word: str, env: Mapping[str, str]) -> str:
        return _ShellWord(word, env, self).process()[0]

    def words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return _ShellWord(word, env, self).process()[1]


class _Words:
    """``wordsStruct``: ProcessWords' splitting at unquoted spaces."""

    def __init__(self) -> None:
        self.word = ""
        self.words: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch in _SPACES:
            if self.in_word and self.word:
                self.words.append(self.word)
                self.word = ""
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word += text
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def get(self) -> list[str]:
        if self.word:
            self.words.append(self.word)
            self.word = ""
            self.in_word = False
        return self.words


class _ShellWord:
    def __init__(self, word: str, env: Mapping[str, str], lex: Lexer) -> None:
        self.sc = Scanner(word)
        self.source = word
        self.env = env
        self.escape = lex.escape
        self.dialect = lex.dialect
        self.raw_quotes = lex.raw_quotes
        self.raw_escapes = lex.raw_escapes
        self.skip_unset = lex.skip_unset
        self.skip_quotes = lex.skip_quotes
        self.used: set[str] = set()
        self.unset: set[str] = set()

    def process(self) -> tuple[str, list[str]]:
        try:
            return self.stop_on(None, self.raw_escapes)
        except WordError as exc:
            raise WordError(f"failed to process {_go_quote(self.source)}: {exc}") from None

    def stop_on(self, stop: str | None, raw_escapes: bool | None = None) -> tuple[str, list[str]]:
        """``processStopOn``; ``raw_escapes`` (0.13) holds for this call only."""
        saved = self.raw_escapes
        if raw_escapes is not None and self.dialect == "0.13":
            self.raw_escapes = raw_escapes
        try:
            return self._stop_on(stop)
        finally:
            self.raw_escapes = saved

    def _stop_on(self, stop: str | None) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        sc = self.sc
        while (ch := sc.peek()) is not None:
            if stop is not None and ch == stop:
                sc.next()
                return "".join(result), words.get()
            if ch == "$" or (not self.skip_quotes and ch in "'\""):
                tmp = self.dollar() if ch == "$" else self.single() if ch == "'" else self.double()
                result.append(tmp)
                if ch == "$":
                    words.add_string(tmp)
                else:
                    words.add_raw(tmp)
                continue
            ch = sc.next()
            assert ch is not None
            if ch == self.escape:
                if self.raw_escapes:
                    words.add_raw(ch)
                    result.append(ch)
                ch = sc.next()
                if ch is None:
                    break
                words.add_raw(ch)
            else:
                words.add_char(ch)
            result.append(ch)
        if stop is not None:
            raise WordError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.get()

    def single(self) -> str:
        result = []
        ch = self.sc.next()
        if self.raw_quotes:
            result.append(ch or "")
        while True:
            ch = self.sc.next()
            if ch is None:
                raise WordError("unexpected end of statement while looking for matching single-quote")
            if ch == "'":
                if self.raw_quotes:
                    result.append(ch)
                return "".join(result)
            result.append(ch)

    def double(self) -> str:
        result = []
        ch = self.sc.next()
        if self.raw_quotes:
            result.append(ch or "")
        while True:
            peek = self.sc.peek()
            if peek is None:
                raise WordError("unexpected end of statement while looking for matching double-quote")
            if peek == '"':
                self.sc.next()
                if self.raw_quotes:
                    result.append(peek)
                return "".join(result)
            if peek == "$":
                result.append(self.dollar())
                continue
            ch = self.sc.next()
            assert ch is not None
            if ch == self.escape:
                if self.raw_escapes:
                    result.append(ch)
                after = self.sc.peek()
                if after is None:
                    continue  # a trailing escape is dropped; the quote stays unterminated
                if after in ('"', "$", self.escape):
                    ch = self.sc.next()
                    assert ch is not None
            result.append(ch)

    def name(self) -> str:
        """``processName``: a run of letters, digits and ``_``; digits alone; or one special parameter."""
        sc = self.sc
        out = ""
        while (ch := sc.peek()) is not None:
            if not out and ch.isdecimal():
                while (ch := sc.peek()) is not None and ch.isdecimal():
                    out += ch
                    sc.next()
                return out
            if not out and ch in _SPECIAL_PARAMS:
                sc.next()
                return ch
            if not (ch.isalpha() or ch.isdecimal() or ch == "_"):
                break
            sc.next()
            out += ch
        return out

    def get(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.used.add(name)
            return self.env[name], True
        self.unset.add(name)
        return "", False

    def dollar(self) -> str:
        sc = self.sc
        sc.next()
        if sc.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.get(name)
            if not found and self.skip_unset:
                return "$" + name
            return value
        sc.next()
        peek = sc.peek()
        if peek is None:
            raise WordError("syntax error: missing '}'")
        if peek in "{}:":
            raise WordError("syntax error: bad substitution")
        name = self.name()
        ch = sc.next()
        if ch == "}":
            value, found = self.get(name)
            if not found and self.skip_unset:
                return "${" + name + "}"
            return value
        if self.dialect == "0.8":
            return self._modifier_08(name, ch)
        return self._modifier(name, ch)

    def _stop_on_brace(self, raw_escapes: bool | None = None) -> str:
        try:
            return self.stop_on("}", raw_escapes)[0]
        except WordError:
            if self.sc.peek() is None:
                raise WordError("syntax error: missing '}'") from None
            raise

    def _modifier_08(self, name: str, ch: str | None) -> str:
        """BuildKit 0.8 to 0.11: only ``?`` and ``:`` modifiers."""
        if ch == "?":
            word = self._stop_on_brace()
            value, found = self.get(name)
            if not found:
                if self.skip_unset:
                    return f"${{{name}?{word}}}"
                raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
            return value
        if ch != ":":
            raise WordError("missing ':' in substitution")
        modifier = self.sc.next()
        word = self._stop_on_brace()
        value, found = self.get(name)
        if modifier in ("+", "-"):
            if modifier == "+" and value != "":
                value = word
            if modifier == "-" and value == "":
                value = word
            if not found and self.skip_unset:
                return f"${{{name}:{modifier}{word}}}"
            return value
        if modifier == "?":
            if not found:
                if self.skip_unset:
                    return f"${{{name}:?{word}}}"
                raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
            if value == "":
                raise WordError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        raise WordError(f"unsupported modifier ({_go_char(modifier)}) in substitution")

    def _modifier(self, name: str, ch: str | None) -> str:
        """BuildKit 0.12 and 0.13."""
        latest = self.dialect == "0.13"
        chs = _go_char(ch)
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.sc.next()
            chs += _go_char(ch)
        elif ch == "/" and latest:
            return self._replace(name)
        elif ch not in ("+", "-", "?") and not (latest and ch in ("#", "%")):
            raise WordError(f"unsupported modifier ({chs}) in substitution")
        word = self._stop_on_brace(ch in ("#", "%"))
        value, found = self.get(name)
        if self.skip_unset and not found:
            return f"${{{name}{chs}{word}}}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise WordError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        if latest and ch in ("#", "%"):
            if not word:  # BuildKit indexes word[0] here and panics; no build gets past it
                raise WordError(f"empty pattern in ${{{name}{chs}}}")
            greedy = word[0] == ch
            if greedy:
                word = word[1:]
            return trim_suffix(word, value, greedy) if ch == "%" else trim_prefix(word, value, greedy)
        raise WordError(f"unsupported modifier ({chs}) in substitution")

    def _replace(self, name: str) -> str:
        """``${V/pattern/replacement}`` and ``${V//pattern/replacement}`` (0.13)."""
        replace_all = self.sc.peek() == "/"
        if replace_all:
            self.sc.next()
        try:
            pattern = self.stop_on("/", True)[0]
        except WordError:
            if self.sc.peek() is None:
                raise WordError("syntax error: missing '/' in ${}") from None
            raise
        replacement = self._stop_on_brace(True)
        value, found = self.get(name)
        if self.skip_unset and not found:
            return f"${{{name}/{pattern}/{replacement}}}"
        regex = shell_pattern(pattern, greedy=True, anchored=False)
        if replace_all:
            return go_replace_all(regex, value, replacement)
        match = regex.search(value)
        if match is None:
            return value
        return value[: match.start()] + replacement + value[match.end() :]


def _go_char(ch: str | None) -> str:
    return "\ufffd" if ch is None else ch


def _go_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
