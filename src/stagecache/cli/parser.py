"""Reading the command line: global options, a command, then the command's own options.

    stagecache [-C DIR] [-q] [-v] [-p NAME] [--profile P] [--env-file F] COMMAND [ACTION] [OPTIONS] [-- ARGS]

The global options may also follow the command (``stagecache build -C DIR``); every other option
belongs to the commands that use it (:mod:`.grammar`). A mistyped command, action or option gets the
closest real one; a usage error prints the usage of the command it is about and ends with exit code 2.

Each argparse parser costs a millisecond or two to build (translations are looked up, a help formatter
is made per option): all of them together are a fifth of a warm hit. So only the sub-parser of the
command given is built; the whole parser is built for ``--help`` before the command, for no command,
and for a command that is not one of :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import NoReturn

from .. import __version__
from .grammar import BUILDERS, Parser, closest, global_options

# command -> what it does (its help line)
COMMANDS = {
    "key": "print the key of a target, or explain it",
    "build": "get each target's image: retag, load or build",
    "test": "run the tests inside the dev image, with services",
    "run": "run the prod service and its dependencies",
    "check-prod": "fail if the prod image holds a dev-only package",
    "images": "untag old key images in the daemon",
    "store": "list, prune or verify the store",
    "watch": "keep a watcher on each context: a repeat key skips the walk",
}
# command -> (module in stagecache.cli.commands, function): imported only when the command runs
HANDLERS = {
    "key": ("build", "key"),
    "build": ("build", "build"),
    "test": ("test", "test"),
    "run": ("test", "run"),
    "check-prod": ("check", "check_prod"),
    "images": ("store", "images"),
    "store": ("store", "store"),
    "watch": ("watch", "watch"),
}
TAKES_EXTRA = {"test"}  # `stagecache test -- -k slow`: what follows `--` goes to the tests

_GLOBAL_LONG = ("--project-dir", "--quiet", "--verbose", "--version", "--help", "--project-name", "--profile",
                "--env-file")  # fmt: skip
_GLOBAL_LONG_VALUES = {"--project-dir", "--project-name", "--profile", "--env-file"}  # these take a value
_GLOBAL_SHORT_FLAGS = "qvh"  # -C and -p take a value


def build_parser(command: str | None = None) -> Parser:
    """The parser; with ``command``, only that command's sub-parser is built (``""``: none)."""
    parser = Parser(
        prog="stagecache",
        description="Content-addressed builds of Dockerfile targets: a hit costs a retag, a miss builds "
        "with BuildKit and keeps the image in a store.",
    )
    parser.add_argument("--version", action="version", version=f"stagecache {__version__}")
    global_options(parser, top=True)
    if command == "":
        return parser
    sub = parser.sub("command", "COMMAND", list(COMMANDS))
    for name, help_line in COMMANDS.items():
        if command is None or command == name:
            child = parser.child(sub, name, help=help_line, description=help_line)
            global_options(child, top=False)
            BUILDERS[name](child)
    return parser


# --- reading argv ---------------------------------------------------------------------------------------
def parse(argv: Sequence[str]) -> argparse.Namespace:
    """The arguments of one run; a usage error exits (2) after printing the usage it is about.

    ``args.command`` is the command, ``args.extra`` what followed ``--``."""
    words = list(argv)
    extra: list[str] = []
    if "--" in words:
        cut = words.index("--")
        words, extra = words[:cut], words[cut + 1 :]
    index, unknown = command_index(words)
    before = words if index is None else words[:index]
    command = None if index is None else words[index]
    if unknown is not None:
        _unknown_global(unknown, words)
    asked_help = "-h" in before or "--help" in before
    if command is None and "--version" in before and not asked_help:
        wanted: str | None = ""
    else:
        wanted = command if command in COMMANDS and not asked_help else None
    parser = build_parser(wanted)
    args, rest = parser.parse_known_args(words)
    chosen = parser.chosen(args)
    if rest:
        chosen.unrecognized(rest)
    if extra and args.command not in TAKES_EXTRA:
        chosen.error("takes no arguments after --")
    args.extra = extra
    return args


def command_index(words: Sequence[str]) -> tuple[int | None, str | None]:
    """Where the command is among ``words``, skipping the global options before it (and -C's value);
    or the first word before it that is no global option."""
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("-") or word == "-":
            return i, None
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            matches = [o for o in _GLOBAL_LONG if o.startswith(name)]  # argparse takes a unique prefix
            if len(matches) != 1:
                return None, word
            if matches[0] in _GLOBAL_LONG_VALUES and "=" not in word:
                i += 1  # its value
        else:
            for j, letter in enumerate(word[1:], start=1):
                if letter in "Cp":
                    i += j == len(word) - 1  # -C DIR, -qC DIR; in -CDIR the rest is the value
                    break
                if letter not in _GLOBAL_SHORT_FLAGS:
                    return None, word
        i += 1
    return None, None


def _unknown_global(word: str, words: Sequence[str]) -> NoReturn:
    """An option before the command that is no global option: said so, with where it belongs."""
    after = next((w for w in words[words.index(word) + 1 :] if w in COMMANDS), None)
    name = word.split("=", 1)[0]
    close = closest(name, [*_GLOBAL_LONG, "-C", "-q", "-v", "-h", "-p"])
    hint = f"; did you mean {close!r}?" if close else ""
    if after and not close:
        options = _all_options(build_parser(after).children[after])
        if any(option.startswith(name) for option in options):
            hint = f"; it is an option of {after}: write it after the command (stagecache {after} {word} …)"
    build_parser(None).error(f"unrecognized arguments: {word}{hint}")


def _all_options(parser: Parser) -> set[str]:
    found = set(parser.option_names())
    for child in parser.children.values():
        found |= _all_options(child)
    return found
