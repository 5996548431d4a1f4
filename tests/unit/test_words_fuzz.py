"""The word lexer against BuildKit's own, over generated words.

The grammar package links BuildKit 0.12's shell lexer and uses it in one place: reading the name of a
heredoc (``COPY <<WORD /x``). It first splits the instruction's line into words with raw quotes and
escapes and unset variables kept (``heredocsFromLine``), then reads the heredoc word twice, without and
with raw quotes (``heredocFromMatch``); the name is what the first reading gives. The same pipeline run
through :mod:`stagecache.key.words` (dialect ``0.12``) must give the name the package gives, refuse the
words the package refuses, and find no heredoc where it finds none. The variables are unset there, so
this covers quotes, escapes, ``$`` forms, word splitting and every modifier's syntax; what expansion does
with set variables is checked against real builds in ``tests/integration/test_key_findings.py``.
"""

from __future__ import annotations

import random
import re

import dockerfile as grammar
import pytest

from stagecache.key.words import Lexer, WordError

ALPHABET = ["a", "b", "X", "_", "0", "1", "$", "$", "{", "}", ":", "-", "+", "?", "#", "%", "/", "*",
            "'", "'", '"', '"', "\\", "\\", " ", "=", "<", ".", "é", "\t"]  # fmt: skip
PIECES = ["${X}", "${X:-", "${X:+", "${X-", "${X+", "${X?", "${X:?", "$X", "${", '\\"', "\\'", "\\$",
          '"a b"', "'a b'", "${1}", "$@", "${X#", "${X/"]  # fmt: skip
HEREDOC = re.compile(r"^(\d*)<<(-?)([^<]*)$")


def generate(rng: random.Random) -> str:
    parts = [
        rng.choice(PIECES) if rng.random() < 0.3 else rng.choice(ALPHABET) for _ in range(rng.randint(1, 9))
    ]
    return "".join(parts)


def predicted(line: str) -> list[str] | str:
    """The heredoc names BuildKit 0.12 reads on ``line``, or the message of the error it gives."""
    splitter = Lexer(dialect="0.12", raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = splitter.words(line, {})
    except WordError:
        return []  # heredocsFromLine ignores this error: no heredocs
    names = []
    for word in words:
        match = HEREDOC.match(word)
        if match is None or not match.group(3):
            continue
        rest = match.group(3)
        try:
            cooked = Lexer(dialect="0.12", skip_unset=True).words(rest, {})
            if len(cooked) != 1:
                continue
            raw = Lexer(dialect="0.12", skip_unset=True, raw_quotes=True).words(rest, {})
        except WordError as exc:
            return str(exc)
        if len(raw) != len(cooked):
            return "internal lexing of heredoc produced inconsistent results"
        names.append(cooked[0])
    return names


def test_the_lexer_reads_heredoc_words_as_the_grammar_package_does() -> None:
    rng = random.Random(20261130)
    tally = {"named": 0, "none": 0, "refused": 0}
    for _ in range(10000):
        word = generate(rng)
        line = f"COPY <<{word} /x"
        expected = predicted(line)
        body = "".join(name + "\n" for name in expected) if isinstance(expected, list) else ""
        text = f"FROM scratch\n{line}\n{body}"
        refusal: str | None = None
        try:
            commands = grammar.parse_string(text)
        except grammar.GoParseError as exc:
            refusal = str(exc)
        if refusal is not None:
            assert isinstance(expected, str), (
                f"{word!r}: the package refuses it ({refusal}), we read {expected!r}"
            )
            assert "unterminated heredoc" not in refusal, f"{word!r}: the package reads another name"
            tally["refused"] += 1
            continue
        assert not isinstance(expected, str), f"{word!r}: we refuse it ({expected}), the package reads it"
        names = [h.name for h in commands[1].heredocs]
        assert names == expected, f"{word!r}: the package reads {names!r}, we read {expected!r}"
        tally["named" if names else "none"] += 1
    # the sample must exercise both readings, or it proves little (refusals are rarer: the package drops
    # a line its first split cannot read, which is "no heredoc" for both)
    assert tally["named"] > 2000, tally
    assert tally["none"] > 2000, tally
    assert tally["refused"] > 0, tally


@pytest.mark.parametrize(
    ("word", "name"),
    [("EOF", "EOF"), ('"E O"', "E O"), ("'E'OF", "EOF"), ("E\\OF", "EOF"), ("${X:-abc}", "${X:-abc}"),
     ('"$X"y', "$Xy"), ("E\\ OF", "E OF")],
)  # fmt: skip
def test_known_heredoc_names(word: str, name: str) -> None:
    assert predicted(f"COPY <<{word} /x") == [name]
    commands = grammar.parse_string(f"FROM scratch\nCOPY <<{word} /x\n{name}\n")
    assert [h.name for h in commands[1].heredocs] == [name]
