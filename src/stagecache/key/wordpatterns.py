"""The parts of BuildKit's word lexer that are not the lexer itself: the shell patterns of
``${V#…}``, ``${V%…}`` and ``${V/…/…}`` (``convertShellPatternToRegex`` and Go's regexp replacement),
and the CSV record of a ``RUN --mount`` value (Go's ``encoding/csv``)."""

from __future__ import annotations

import re


class Scanner:
    """The two calls of Go's ``text/scanner`` the lexer uses; a BOM at the very start is skipped."""

    __slots__ = ("i", "s")

    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 1 if text.startswith("\ufeff") else 0

    def peek(self) -> str | None:
        return self.s[self.i] if self.i < len(self.s) else None

    def next(self) -> str | None:
        if self.i >= len(self.s):
            return None
        self.i += 1
        return self.s[self.i - 1]


class WordError(ValueError):
    """A word BuildKit's lexer refuses (an unterminated quote, a bad substitution, ``${V:?}`` unset)."""


# --- patterns of ${V#…}, ${V%…}, ${V/…/…} -----------------------------------------------------------------
def shell_pattern(pattern: str, *, greedy: bool, anchored: bool) -> re.Pattern[str]:
    """``convertShellPatternToRegex``: ``*`` and ``?`` wildcards, ``\\`` escapes them; no brackets."""
    sc = Scanner(pattern)
    out = ["^"] if anchored else []
    star = ".*" if greedy else ".*?"
    while (tok := sc.next()) is not None:
        if tok == "*":
            out.append(star)
            continue
        if tok == "?":
            out.append(".")
            continue
        if tok == "\\":
            if sc.peek() in ("}", "/"):
                continue
            out.append("\\")
            tok = sc.next()
            if tok not in ("*", "?", "\\"):
                raise WordError(
                    f"invalid pattern ({pattern}) in substitution: invalid escape '\\{_go_char(tok)}'"
                )
        elif tok in "[]{}.+()|^$":
            out.append("\\")
        out.append(tok)
    return re.compile("".join(out))


def trim_prefix(pattern: str, value: str, greedy: bool) -> str:
    match = shell_pattern(pattern, greedy=greedy, anchored=True).search(value)
    return value[match.end() :] if match else value


def _reverse_pattern(pattern: str) -> str:
    """Reversed, escapes kept in front of what they escape (``a\\*c`` -> ``c\\*a``)."""
    out = [""] * len(pattern)
    last = len(pattern) - 1
    i = 0
    while i <= last:
        at = last - i
        if pattern[i] == "\\" and i != last:
            out[at - 1] = pattern[i]
            out[at] = pattern[i + 1]
            i += 2
        else:
            out[at] = pattern[i]
            i += 1
    return "".join(out)


def trim_suffix(pattern: str, value: str, greedy: bool) -> str:
    return trim_prefix(_reverse_pattern(pattern), value[::-1], greedy)[::-1]


def go_replace_all(regex: re.Pattern[str], src: str, template: str) -> str:
    """Go's ``Regexp.ReplaceAllString``: no replacement for an empty match right after a match, and
    ``$0``/``${0}`` in the template is the match, ``$$`` a dollar sign, any other ``$name`` empty."""
    out: list[str] = []
    last_end = 0
    pos = 0
    while pos <= len(src):
        match = regex.search(src, pos)
        if match is None:
            break
        start, end = match.span()
        out.append(src[last_end:start])
        if end > last_end or start == 0:
            out.append(_go_expand(template, match.group(0)))
        last_end = end
        width = 1 if pos < len(src) else 0
        if pos + width > end:
            pos += width
        elif pos + 1 > end:
            pos += 1
        else:
            pos = end
    out.append(src[last_end:])
    return "".join(out)


def _go_expand(template: str, whole: str) -> str:
    out = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$":
            out.append(ch)
            i += 1
            continue
        if template[i + 1 : i + 2] == "$":
            out.append("$")
            i += 2
            continue
        j = i + 1
        brace = template[j : j + 1] == "{"
        if brace:
            j += 1
        k = j
        while k < len(template) and (template[k].isalpha() or template[k].isdecimal() or template[k] == "_"):
            k += 1
        name = template[j:k]
        if not name or (brace and template[k : k + 1] != "}"):
            out.append("$")  # malformed: the dollar sign is text
            i += 1
            continue
        i = k + 1 if brace else k
        if name == "0":  # the only group there is; numbers with leading zeros are names, and empty
            out.append(whole)
    return "".join(out)


def csv_fields(text: str) -> list[str]:
    """The one record Go's ``encoding/csv`` reads from ``text`` (a ``--mount`` value), strictly."""
    if not text:
        raise WordError("failed to parse csv mounts: EOF")
    text = text.split("\n", 1)[0].removesuffix("\r")
    fields: list[str] = []
    i = 0
    while True:
        if text[i : i + 1] == '"':
            value = []
            i += 1
            while True:
                j = text.find('"', i)
                if j < 0:
                    raise WordError('failed to parse csv mounts: extraneous or missing " in quoted-field')
                value.append(text[i:j])
                if text[j + 1 : j + 2] == '"':
                    value.append('"')
                    i = j + 2
                    continue
                i = j + 1
                break
            if i < len(text) and text[i] != ",":
                raise WordError('failed to parse csv mounts: extraneous or missing " in quoted-field')
            fields.append("".join(value))
        else:
            j = text.find(",", i)
            field = text[i:] if j < 0 else text[i:j]
            if '"' in field:
                raise WordError('failed to parse csv mounts: bare " in non-quoted-field')
            fields.append(field)
            i = len(text) if j < 0 else j
        if i >= len(text):
            return fields
        i += 1  # the comma
        if i == len(text):
            fields.append("")
            return fields


def _go_char(ch: str | None) -> str:
    return "\ufffd" if ch is None else ch
