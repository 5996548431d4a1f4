"""The command line's grammar: global options before (or after) the command, each command's own
options, "did you mean", the usage of the command a usage error is about, and the lazy parser."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from stagecache.cli import main
from stagecache.cli.grammar import Parser, closest
from stagecache.cli.parser import COMMANDS, HANDLERS, build_parser, command_index, parse


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A command that parses runs against caches and a store of the test's own."""
    monkeypatch.setenv("STAGECACHE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("STAGECACHE_STORE", str(tmp_path / "store"))


def usage_error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    """The stderr of a run that must end as a usage error (exit 2, nothing on stdout)."""
    out = io.StringIO()
    assert main(list(argv), out=out) == 2
    assert out.getvalue() == ""
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


# --- global options -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "argv",
    [
        ["-C", "proj", "-q", "-v", "build"],
        ["build", "-C", "proj", "-q", "-v"],
        ["-qvC", "proj", "build"],
        ["--project-dir=proj", "--quiet", "build", "--verbose"],
        ["-Cproj", "-q", "build", "-v"],
    ],
)
def test_global_options_before_or_after_the_command(argv: list[str]) -> None:
    args = parse(argv)
    assert (args.command, args.project_dir, args.quiet, args.verbose) == ("build", "proj", True, True)


def test_global_options_default_when_not_given() -> None:
    args = parse(["store", "ls"])
    assert (args.project_dir, args.quiet, args.verbose) == (".", False, False)


def test_an_option_after_the_command_does_not_undo_one_before_it() -> None:
    """An absent option on the command's parser sets nothing (argparse would copy its default over)."""
    assert parse(["-C", "proj", "store", "--store", "s", "ls"]).project_dir == "proj"
    assert parse(["-q", "watch", "start"]).quiet is True
    assert parse(["-C", "a", "build", "-C", "b"]).project_dir == "b"  # the later one wins


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["build"], (0, None)),
        (["-C", "build", "key"], (2, None)),  # `build` is -C's value
        (["-qC", "x", "key"], (2, None)),
        (["-Cx", "key"], (1, None)),
        (["--project-dir", "x", "-v", "key"], (3, None)),
        (["--project-d", "x", "key"], (2, None)),  # argparse's unique prefix
        (["--proj", "x", "key"], (None, "--proj")),  # --project-dir or --project-name
        (["-p", "key", "--profile", "p", "--env-file=e", "build"], (5, None)),  # compose's, with values
        (["-qp", "x", "key"], (2, None)),
        (["--project-dir=x", "key"], (1, None)),
        (["--json", "key"], (None, "--json")),
        (["-x", "key"], (None, "-x")),
        (["-q"], (None, None)),
    ],
)
def test_command_index_skips_global_options_and_their_values(
    words: list[str], expected: tuple[int | None, str | None]
) -> None:
    assert command_index(words) == expected


def test_a_command_option_before_the_command_is_refused_with_where_it_goes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = usage_error(capsys, "--store", "/tmp/s", "store", "ls")
    assert err.startswith("usage: stagecache [-h]")
    assert "unrecognized arguments: --store; it is an option of store: write it after the command" in err
    assert "did you mean '--verbose'?" in usage_error(capsys, "--verbse", "store", "ls")


# --- each command takes only its options ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "refused"),
    [
        (["store", "ls", "--build-arg", "X=1"], "--build-arg X=1"),
        (["store", "verify", "--compose-file", "c.yml"], "--compose-file c.yml"),
        (["images", "prune", "--file", "Dockerfile"], "--file Dockerfile"),
        (["images", "prune", "--store", "s"], "--store s"),
        (["key", "--no-store"], "--no-store"),
        (["key", "--rebuild"], "--rebuild"),
        (["run", "--json"], "--json"),
        (["watch", "status", "--context", "."], "--context ."),
        (["watch", "start", "--build-arg", "X=1"], "--build-arg"),  # X=1 is a TARGET
        (["build", "--keep", "3"], "--keep"),
    ],
)
def test_an_option_of_another_command_is_refused_with_this_commands_usage(
    argv: list[str], refused: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, *argv)
    prog = "stagecache " + " ".join(w for w in argv[:2] if not w.startswith("-"))
    prog = prog if argv[0] in ("store", "images", "watch") else f"stagecache {argv[0]}"
    assert err.startswith(f"usage: {prog} [-h]"), err
    assert f"{prog}: error: unrecognized arguments: {refused}" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["key", "-C", ".", "--compose-file", "c.yml", "-f", "D", "--context", ".", "--build-arg", "A=1",
         "--repository", "r", "--store", "s", "--json", "--why", "t"],
        ["build", "--compose-file", "c.yml", "--repository", "r", "--store", "s", "--no-store", "-t", "x:y",
         "--rebuild", "--no-commit-tag", "--json", "a", "b"],
        ["test", "svc", "--results", "r", "--wait-timeout", "5", "-e", "A", "--network-host", "--add-host",
         "db", "--skip-passed", "--json", "--no-store", "--store", "s", "--repository", "r"],
        ["run", "svc", "--no-store", "--store", "s", "-f", "D"],
        ["check-prod", "t", "--json", "--no-store", "--build-arg", "A=1"],
        ["images", "prune", "--keep", "2", "--dry-run", "--repository", "r", "--json", "-q"],
        ["store", "--store", "s", "prune", "--max-size", "5GB", "--keep", "2", "--older-than", "7d",
         "--dry-run", "--json"],
        ["store", "verify", "--store", "s", "--json"],
        ["watch", "-f", "D", "start", "--context", ".", "t"],
        ["watch", "stop", "--all", "-C", "."],
        ["watch", "status", "--json"],
    ],
)  # fmt: skip
def test_every_documented_option_still_parses(argv: list[str]) -> None:
    assert parse(argv).command == argv[0]


def test_key_json_goes_with_why_or_explain_but_why_and_explain_do_not(
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = parse(["key", "--why", "--json"])
    assert (args.why, args.json) == (True, True)
    assert "not allowed with argument" in usage_error(capsys, "key", "--why", "--explain")


def test_store_option_before_or_after_the_action() -> None:
    assert parse(["store", "--store", "a", "ls"]).store == "a"
    assert parse(["store", "ls", "--store", "b"]).store == "b"
    assert parse(["store", "--store", "a", "ls", "--store", "b"]).store == "b"
    assert parse(["store", "ls"]).store is None


# --- did you mean ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (["buidl"], "stagecache [-h]", "stagecache: error: unknown command 'buidl'; did you mean 'build'?"),
        (["chek-prod"], "stagecache [-h]", "unknown command 'chek-prod'; did you mean 'check-prod'?"),
        (["store", "lss"], "stagecache store [-h]",
         "stagecache store: error: unknown action 'lss'; did you mean 'ls'?"),
        (["watch", "stat"], "stagecache watch [-h]", "unknown action 'stat'; did you mean 'status'?"),
        (["store", "ls", "--jsn"], "stagecache store ls [-h]",
         "unrecognized arguments: --jsn; did you mean '--json'?"),
        (["build", "--rebuidl"], "stagecache build [-h]", "did you mean '--rebuild'?"),
        (["store", "prune", "--dryrun"], "stagecache store prune [-h]", "did you mean '--dry-run'?"),
    ],
)  # fmt: skip
def test_a_typo_gets_the_closest_word_and_the_usage_it_is_about(
    argv: list[str], usage: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    err = usage_error(capsys, *argv)
    assert err.startswith(f"usage: {usage}"), err
    assert message in err


def test_no_suggestion_when_nothing_is_close(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "frobnicate")
    assert "unknown command 'frobnicate'; commands: key, build, test, run, check-prod" in err
    err = usage_error(capsys, "build", "--keep")  # shares only the dashes with --help
    assert "did you mean" not in err


def test_closest() -> None:
    assert closest("--jsn", ["--json", "--store"]) == "--json"
    assert closest("--keep", ["--help", "--json"]) is None
    assert closest("stat", ["start", "stop", "status"]) == "status"  # the one it begins
    assert closest("st", ["start", "stop", "status"]) is None  # begins three: too short to choose


# --- usage errors name their command --------------------------------------------------------------------
def test_a_bad_value_prints_that_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "images", "prune", "--keep", "many")
    assert err.startswith("usage: stagecache images prune [-h]")
    assert "argument --keep: invalid int value: 'many'" in err
    err = usage_error(capsys, "test", "--wait-timeout")
    assert err.startswith("usage: stagecache test [-h]")


def test_a_missing_action_prints_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    err = usage_error(capsys, "store")
    assert err.startswith("usage: stagecache store [-h]")
    assert "the following arguments are required: ACTION" in err


def test_arguments_after_double_dash_only_for_test(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse(["test", "api-tests", "--", "-k", "slow", "--json"]).extra == ["-k", "slow", "--json"]
    assert parse(["test", "--json"]).extra == []
    err = usage_error(capsys, "store", "ls", "--", "x")
    assert err.startswith("usage: stagecache store ls [-h]")
    assert "stagecache store ls: error: takes no arguments after --" in err


def test_help_and_version_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("stagecache ")
    assert main(["store", "ls", "--help"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: stagecache store ls [-h]")
    assert "--build-arg" not in text
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(f"\n    {command} " in text for command in COMMANDS)


# --- the lazy parser ------------------------------------------------------------------------------------
def test_only_the_chosen_commands_parser_is_built() -> None:
    assert set(build_parser("store").children) == {"store"}
    assert set(build_parser("store").children["store"].children) == {"ls", "prune", "verify"}
    assert set(build_parser(None).children) == set(COMMANDS)
    assert build_parser("").children == {}  # --version: no command at all


@pytest.mark.parametrize(
    ("argv", "built"),
    [
        (["-C", "proj", "-q", "store", "ls"], "store"),  # -C's value is not taken for the command
        (["build", "--help"], "build"),
        (["--version"], ""),
        (["--help", "build"], None),  # the top-level help lists every command
        (["buidl"], None),  # every command, to say which one was meant
    ],
)
def test_parse_builds_only_what_the_words_need(
    argv: list[str], built: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import stagecache.cli.parser as parser_module

    asked: list[str | None] = []

    def spy(command: str | None = None) -> Parser:
        asked.append(command)
        return build_parser(command)

    monkeypatch.setattr(parser_module, "build_parser", spy)
    with contextlib.suppress(SystemExit):
        parse(argv)
    assert asked == [built]


def test_every_command_has_a_handler() -> None:
    import importlib

    assert set(HANDLERS) == set(COMMANDS)
    for module, function in HANDLERS.values():
        assert callable(getattr(importlib.import_module(f"stagecache.cli.commands.{module}"), function))


def test_project_dir_names_the_project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """-C before the command reaches the command: a missing project is named as given."""
    code = main(["-C", str(tmp_path / "nowhere"), "watch", "start", "-f", "Dockerfile"])
    assert code == 2
    assert f"{tmp_path / 'nowhere'}: project directory not found" in capsys.readouterr().err
