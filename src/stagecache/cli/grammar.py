"""The words of the command line: a parser that suggests, and each command's options.

Options are grouped by what they are about (the project, its images, the store), and each command
takes the groups it uses and no other: ``store ls --build-arg X`` is an error, not an option ignored.
The global options (``-C``, ``-q``, ``-v``) go before the command or after it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn


class Parser(argparse.ArgumentParser):
    """An argparse parser that names the closest command, action or option in its errors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children: dict[str, Parser] = {}  # its sub-commands' (or actions') parsers
        self.child_dest: str | None = None  # where the chosen sub-command's name goes
        self.child_metavar = ""
        self.child_names: list[str] = []  # every sub-command, also those whose parser is not built

    def sub(self, dest: str, metavar: str, names: Sequence[str]) -> Any:
        """Sub-commands (``dest`` is where the chosen one goes); ``names`` for suggestions."""
        self.child_dest, self.child_metavar, self.child_names = dest, metavar, list(names)
        return self.add_subparsers(dest=dest, required=True, metavar=metavar, parser_class=Parser)

    def child(self, subparsers: Any, name: str, **kwargs: Any) -> Parser:
        parser: Parser = subparsers.add_parser(name, **kwargs)
        self.children[name] = parser
        return parser

    def chosen(self, args: argparse.Namespace) -> Parser:
        """The innermost parser the arguments went to (``stagecache store ls``: the one of ``ls``)."""
        parser = self
        while parser.child_dest is not None:
            name = getattr(args, parser.child_dest, None)
            if name not in parser.children:
                break
            parser = parser.children[name]
        return parser

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {self._explained(message)}\n")

    def unrecognized(self, words: Sequence[str]) -> NoReturn:
        """Words this parser has no place for: an error naming them, with the closest option."""
        message = f"unrecognized arguments: {' '.join(words)}"
        options = [w for w in words if w.startswith("--")]
        close = closest(options[0].split("=", 1)[0], self.option_names()) if options else None
        self.error(message + (f"; did you mean {close!r}?" if close else ""))

    def option_names(self) -> list[str]:
        return [s for action in self._actions for s in action.option_strings if s.startswith("--")]

    def _explained(self, message: str) -> str:
        """An unknown sub-command said plainly, with the closest one."""
        import re

        match = re.match(rf"argument {self.child_metavar}: invalid choice: (['\"])(.*?)\1", message)
        if not match or not self.child_names:
            return message
        word, what = match.group(2), self.child_metavar.lower()
        close = closest(word, self.child_names)
        hint = f"did you mean {close!r}?" if close else f"{what}s: {', '.join(self.child_names)}"
        return f"unknown {what} {word!r}; {hint}"


def closest(word: str, choices: Sequence[str]) -> str | None:
    """The choice ``word`` most likely misspells, if one is close enough. Leading dashes are left out
    of the comparison: every long option shares them, which would make ``--keep`` look like ``--help``."""
    import difflib

    bare = {choice.lstrip("-"): choice for choice in choices}
    typed = word.lstrip("-")
    starting = [choice for name, choice in bare.items() if typed and name.startswith(typed)]
    if len(starting) == 1:  # `watch stat`: the one that begins so, not the one spelled most alike
        return starting[0]
    found = difflib.get_close_matches(typed, list(bare), n=1, cutoff=0.7)
    return bare[found[0]] if found else None


# --- options, by what they are about --------------------------------------------------------------------
def global_options(p: Parser, *, top: bool) -> None:
    """``-C``, ``-q``, ``-v`` and compose's ``-p``, ``--profile``, ``--env-file`` (passed on to every
    compose call): before the command, or after it. After it (``top=False``) an option not given sets
    nothing, so that it does not undo the same option given before the command."""
    group = p.add_argument_group("global options") if not top else p
    unset: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    group.add_argument("-C", "--project-dir", metavar="DIR", **(unset or {"default": "."}),
                       help="the project (compose file, pyproject.toml); default: here")  # fmt: skip
    group.add_argument("-q", "--quiet", action="store_true", **unset, help="only results and errors")
    group.add_argument("-v", "--verbose", action="store_true", **unset, help="log every docker command")
    group.add_argument("-p", "--project-name", metavar="NAME", **unset,
                       help="the compose project name, as docker compose -p")  # fmt: skip
    group.add_argument("--profile", action="append", metavar="PROFILE", **unset,
                       help="a compose profile to enable (repeatable), as compose --profile")  # fmt: skip
    group.add_argument("--env-file", action="append", metavar="FILE", **unset,
                       help="an env file for compose (repeatable), as compose --env-file")  # fmt: skip


def _project_options(p: Parser, *, build_args: bool = True, defaults: bool = True) -> None:
    """Where the targets come from: a compose file, or a Dockerfile and a context."""
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    group = p.add_argument_group("project")
    group.add_argument("--compose-file", action="append", metavar="FILE", **unset,
                       help="compose file(s) to read")  # fmt: skip
    group.add_argument(
        "-f", "--file", metavar="DOCKERFILE", **unset, help="a Dockerfile, without a compose file"
    )
    group.add_argument("--context", metavar="DIR", **unset,
                       help="the build context with -f (default: the project)")  # fmt: skip
    if build_args:
        group.add_argument("--build-arg", action="append", metavar="NAME=VALUE", **unset,
                           help="override a build arg")  # fmt: skip


def _store_option(p: Parser | Any, *, defaults: bool = True) -> None:
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("--store", metavar="DIR", **unset, help="the store directory (env STAGECACHE_STORE)")


def _image_options(p: Parser, *, no_store: bool = True) -> None:
    """Where images go: the key tags' repository, the store."""
    group = p.add_argument_group("images")
    group.add_argument("--repository", help="image repository for key tags (default: from compose)")
    _store_option(group)
    if no_store:
        group.add_argument("--no-store", action="store_true", help="neither read nor write the store")
        group.add_argument(
            "--save", action="store_true", help="write builds into the store here too (default: in CI only)"
        )


def _json_option(p: Parser, what: str) -> None:
    p.add_argument("--json", action="store_true", help=f"print {what} as JSON")


# --- the commands ---------------------------------------------------------------------------------------
def _key(p: Parser) -> None:
    _project_options(p)
    _image_options(p, no_store=False)  # the store holds the last build, for --why
    p.add_argument("target", nargs="?", help="a compose service with build:, or a stage with -f")
    p.add_argument(
        "--json", action="store_true", help="as JSON: the input manifest, or with --why the changes"
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--explain", action="store_true", help="the inputs, for a person")
    mode.add_argument("--why", action="store_true", help="what changed since the target's last build")


def _build(p: Parser) -> None:
    _project_options(p)
    _image_options(p)
    p.add_argument("targets", nargs="*", metavar="TARGET", help="default: every configured target")
    p.add_argument("-t", "--tag", action="append", metavar="NAME:TAG", help="also tag the image")
    p.add_argument("--rebuild", action="store_true", help="build even on a hit")
    p.add_argument("--no-commit-tag", action="store_true", help="do not tag with the commit SHA")
    _json_option(p, "results")


def _test(p: Parser) -> None:
    _project_options(p)
    _image_options(p)
    p.add_argument("service", nargs="?", help="the test service (default: [tool.stagecache] test-service)")
    p.epilog = ("COMMAND runs in place of the service's command, as `docker compose run SERVICE COMMAND`; "
                "options alone (-- -x -q) go after the default command: [tool.stagecache] test-command, "
                "else the service's command when it runs tests, else `python -m pytest`. "
                "A run ended by --timeout exits 124.")  # fmt: skip
    p.add_argument("--results", metavar="DIR", help="write JUnit XML here (DIR/junit-SERVICE.xml)")
    p.add_argument("--wait-timeout", type=int, default=120, metavar="S", help="seconds to wait for services")
    p.add_argument("--timeout", metavar="TIME", help="end the run after TIME (e.g. 900, 30m; default: "
                   "[tool.stagecache] test-timeout, else 1h); exit 124")  # fmt: skip
    p.add_argument("--keep-mounts", action="store_true",
                   help="keep every bind mount and volumes_from as they are")  # fmt: skip
    p.add_argument("-e", "--env", action="append", metavar="NAME[=VALUE]", help="set or pass a variable")
    p.add_argument("--network-host", action="store_true", help="no compose: share the host's network")
    p.add_argument("--add-host", action="append", metavar="NAME", help="no compose: NAME is the host")
    p.add_argument("--skip-passed", action="store_true", help="skip a rerun identical to one that passed")
    _json_option(p, "the outcome (the tests' own output goes to stderr)")


def _run(p: Parser) -> None:
    _project_options(p)
    _image_options(p)
    p.add_argument("service", nargs="?", help="default: the service built for the prod stage")


def _check_prod(p: Parser) -> None:
    _project_options(p)
    _image_options(p)
    p.add_argument("target", nargs="?", metavar="TARGET|STAGE|PATH[:STAGE]",
                   help="the prod image (default: [tool.stagecache] prod-target, else the target building a "
                   "prod/production/release/runtime/final stage, else such a stage of the test service's "
                   "Dockerfile, else a second Dockerfile.prod; see docs/checkprod.md)")  # fmt: skip
    _json_option(p, "the report")


def _images(p: Parser) -> None:
    sub = p.sub("images_command", "ACTION", ["prune"])
    prune = p.child(sub, "prune", help="keep the newest key tags of each target, untag the rest")
    global_options(prune, top=False)
    prune.add_argument("--keep", type=int, default=3, metavar="N", help="key tags kept per target (3)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go")
    prune.add_argument("--repository", help="only this image repository's key tags")
    _json_option(prune, "the tags untagged")


def _store(p: Parser) -> None:
    # --store goes before the action or after it: `store --store DIR ls` and `store ls --store DIR`.
    _store_option(p)
    sub = p.sub("store_command", "ACTION", ["ls", "prune", "verify"])
    ls = p.child(sub, "ls", help="list entries, most recently used first")
    prune = p.child(sub, "prune", help="remove least recently used entries")
    verify = p.child(sub, "verify", help="check every archive against its digest")
    for action in (ls, prune, verify):
        global_options(action, top=False)
        _store_option(action, defaults=False)
    _json_option(ls, "entries")
    prune.add_argument("--max-size", metavar="SIZE", help="keep the store under SIZE (e.g. 5GB)")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the N most recently used")
    prune.add_argument("--older-than", metavar="AGE", help="remove entries unused for AGE (e.g. 7d)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go")
    _json_option(prune, "the entries removed")
    verify.add_argument("--repair", action="store_true", help="also remove stray files and bad records")
    _json_option(verify, "the damage found")


def _watch(p: Parser) -> None:
    # The project's options go before the action or after it, as the store's do.
    _project_options(p, build_args=False)
    sub = p.sub("watch_command", "ACTION", ["start", "stop", "status"])
    start = p.child(sub, "start", help="start a watcher for each target's context")
    stop = p.child(sub, "stop", help="stop the watchers of these targets' contexts")
    status = p.child(sub, "status", help="list the running watchers")
    for action in (start, stop):
        global_options(action, top=False)
        _project_options(action, build_args=False, defaults=False)
        action.add_argument("targets", nargs="*", metavar="TARGET", help="default: every configured target")
    stop.add_argument("--all", action="store_true", help="stop every watcher of this user")
    global_options(status, top=False)
    _json_option(status, "them")


BUILDERS = {
    "key": _key,
    "build": _build,
    "test": _test,
    "run": _run,
    "check-prod": _check_prod,
    "images": _images,
    "store": _store,
    "watch": _watch,
}
