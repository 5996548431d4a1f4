"""Which files compose reads, found by compose's rules (compose-go's cli/options.go, compose's
setEnvWithDotEnv); tests/integration/test_projects_compose.py checks the same shapes against compose."""

from __future__ import annotations

from pathlib import Path

import pytest

from stagecache.errors import ConfigError
from stagecache.project.compose_files import discover, parse_dotenv


def touch(root: Path, *names: str, text: str = "services: {}\n") -> None:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def test_no_compose_file_is_none(tmp_path: Path) -> None:
    assert discover(tmp_path, environ={}) is None


@pytest.mark.parametrize(
    ("present", "chosen"),
    [
        (["compose.yaml", "docker-compose.yml"], "compose.yaml"),
        (["compose.yml", "docker-compose.yml"], "compose.yml"),
        (["docker-compose.yaml", "docker-compose.yml"], "docker-compose.yml"),  # compose-go's order
        (["docker-compose.yaml"], "docker-compose.yaml"),
    ],
)
def test_the_first_default_name_wins(tmp_path: Path, present: list[str], chosen: str) -> None:
    touch(tmp_path, *present)
    found = discover(tmp_path, environ={})
    assert found is not None
    assert found.files == (tmp_path / chosen,)
    assert found.directory == tmp_path
    assert not found.explicit


def test_the_override_beside_it_is_read_too(tmp_path: Path) -> None:
    touch(tmp_path, "docker-compose.yml", "compose.override.yaml", "docker-compose.override.yml")
    found = discover(tmp_path, environ={})
    assert found is not None
    # any override name goes with any compose name; compose.override.yml would come first
    assert found.files == (tmp_path / "docker-compose.yml", tmp_path / "compose.override.yaml")


def test_parents_are_searched_and_give_the_working_directory(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml", "compose.override.yml")
    (tmp_path / "services" / "api").mkdir(parents=True)
    found = discover(tmp_path / "services" / "api", environ={})
    assert found is not None
    assert found.files == (tmp_path / "compose.yaml", tmp_path / "compose.override.yml")
    assert found.directory == tmp_path


def test_compose_file_variable_with_its_separator(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml", "compose.ci.yaml", "compose.override.yaml")
    found = discover(tmp_path, environ={"COMPOSE_FILE": "compose.yaml:compose.ci.yaml"})
    assert found is not None
    assert found.files == (tmp_path / "compose.yaml", tmp_path / "compose.ci.yaml")  # no override
    env = {"COMPOSE_FILE": "compose.yaml;compose.ci.yaml", "COMPOSE_PATH_SEPARATOR": ";"}
    found = discover(tmp_path, environ=env)
    assert found is not None
    assert found.files == (tmp_path / "compose.yaml", tmp_path / "compose.ci.yaml")


def test_compose_file_naming_a_missing_file_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml")
    with pytest.raises(
        ConfigError, match=r"compose.nope.yaml: compose file not found \(named by COMPOSE_FILE\)"
    ):
        discover(tmp_path, environ={"COMPOSE_FILE": "compose.yaml:compose.nope.yaml"})


def test_compose_file_from_dotenv_and_the_environment_wins(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml", "compose.ci.yaml", "compose.dev.yaml")
    (tmp_path / ".env").write_text("COMPOSE_FILE=compose.yaml:compose.ci.yaml\nCOMPOSE_PROFILES=a, b\n")
    found = discover(tmp_path, environ={})
    assert found is not None
    assert found.files == (tmp_path / "compose.yaml", tmp_path / "compose.ci.yaml")
    assert found.env_files == (tmp_path / ".env",)
    assert found.profiles == ("a", "b")
    found = discover(tmp_path, environ={"COMPOSE_FILE": "compose.dev.yaml", "COMPOSE_PROFILES": "c"})
    assert found is not None
    assert found.files == (tmp_path / "compose.dev.yaml",)
    assert found.profiles == ("c",)


def test_env_files_given_replace_dotenv(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml", "compose.ci.yaml")
    (tmp_path / ".env").write_text("COMPOSE_PROFILES=from-dotenv\n")
    (tmp_path / "ci.env").write_text("COMPOSE_FILE=compose.ci.yaml\n")
    found = discover(tmp_path, env_files=["ci.env"], environ={})
    assert found is not None
    assert found.files == (tmp_path / "compose.ci.yaml",)
    assert found.env_files == (tmp_path / "ci.env",)
    assert found.given_env_files == (tmp_path / "ci.env",)
    assert found.profiles == ()
    found = discover(tmp_path, environ={"COMPOSE_ENV_FILES": "ci.env"})  # the variable does the same
    assert found is not None
    assert found.files == (tmp_path / "compose.ci.yaml",)
    assert found.given_env_files == ()


def test_dotenv_can_be_turned_off(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml")
    (tmp_path / ".env").write_text("A=1\n")
    found = discover(tmp_path, environ={"COMPOSE_DISABLE_ENV_FILE": "true"})
    assert found is not None
    assert found.env_files == ()


def test_files_given_win_over_everything(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml", "compose.override.yaml", "other/c.yaml")
    found = discover(tmp_path, ["other/c.yaml"], environ={"COMPOSE_FILE": "compose.yaml"})
    assert found is not None
    assert found.files == (tmp_path / "other" / "c.yaml",)
    assert found.directory == tmp_path / "other"
    assert found.explicit
    with pytest.raises(ConfigError, match=r"missing\.yaml: compose file not found"):
        discover(tmp_path, ["missing.yaml"], environ={})


def test_profiles_given_win_over_the_variable(tmp_path: Path) -> None:
    touch(tmp_path, "compose.yaml")
    found = discover(tmp_path, profiles=["x"], project_name="p", environ={"COMPOSE_PROFILES": "y"})
    assert found is not None
    assert (found.profiles, found.given_profiles, found.project_name) == (("x",), ("x",), "p")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("A=1\nB = two words  # a comment\n", {"A": "1", "B": "two words"}),
        ("export A=1\nB: yaml-style\n", {"A": "1", "B": "yaml-style"}),
        ("# only a comment\n\n  C='single $HOME # kept'\n", {"C": "single $HOME # kept"}),
        ('D="double\\nline ${X}"\n', {"D": "double\nline ex"}),
        ('E="spans\ntwo lines"\nF=after\n', {"E": "spans\ntwo lines", "F": "after"}),
        ("G=${X}-${MISSING:-default}-$$\n", {"G": "ex-default-$"}),
        ("H=${X:+set}${MISSING-unset}\n", {"H": "setunset"}),
        ("X\nMISSING\n", {"X": "ex"}),  # a name alone: the environment's value, if it has one
        ("I=1\nJ=$I$I\n", {"I": "1", "J": "11"}),  # earlier lines count
    ],
)
def test_dotenv_lines(text: str, expected: dict[str, str]) -> None:
    assert parse_dotenv(text, {"X": "ex"}) == expected
