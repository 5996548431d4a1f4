"""The argv the Docker face builds, checked with a recording runner (no engine)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from stagecache.engine.base import Compose
from stagecache.engine.docker import Docker, argv
from stagecache.process import Completed


class Recorder:
    def __init__(self, stdout: str = "", returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.answer = (returncode, stdout, stderr)

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        stdin: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Completed:
        self.calls.append(list(argv))
        code, out, err = self.answer
        return Completed(list(argv), code, out, err)


def test_argv_helper_skips_none_and_false_and_repeats_lists() -> None:
    assert argv("build", target="dev", no_cache=True, quiet=False, platform=None, tag=["a", "b"]) == [
        "build", "--target", "dev", "--no-cache", "--tag", "a", "--tag", "b",
    ]  # fmt: skip


def test_build_argv(tmp_path: Path) -> None:
    runner = Recorder()
    Docker(runner=runner).build(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="prod", tags=["r:sc-1"],
        build_args={"A": "1"}, labels={"l": "v"}, quiet=True, iidfile=tmp_path / "iid",
    )  # fmt: skip
    assert runner.calls == [[
        "docker", "buildx", "build", "--file", str(tmp_path / "Dockerfile"), "--target", "prod",
        "--tag", "r:sc-1", "--build-arg", "A=1", "--label", "l=v", "--iidfile", str(tmp_path / "iid"),
        "--progress", "plain", "--load", str(tmp_path),
    ]]  # fmt: skip


def test_compose_argv_names_project_files_and_directory(tmp_path: Path) -> None:
    runner = Recorder()
    project = Compose((tmp_path / "docker-compose.yml", tmp_path / "override.json"), tmp_path, "sc-x-1")
    Docker(runner=runner).compose(project, "down", "--volumes")
    assert runner.calls == [[
        "docker", "compose", "--project-directory", str(tmp_path), "--project-name", "sc-x-1",
        "-f", str(tmp_path / "docker-compose.yml"), "-f", str(tmp_path / "override.json"),
        "down", "--volumes",
    ]]  # fmt: skip


def test_inspect_of_a_missing_image_is_none() -> None:
    runner = Recorder(returncode=1, stderr="Error: No such image: nope:1")
    assert Docker(runner=runner).image_inspect("nope:1") is None
    assert runner.calls == [["docker", "image", "inspect", "nope:1"]]


def test_engine_version_and_platform_in_one_call() -> None:
    runner = Recorder(stdout="20.10.24 linux/amd64\n")
    docker = Docker(runner=runner)
    assert docker.engine().platform == "linux/amd64"
    assert docker.engine().version == "20.10.24"
    assert len(runner.calls) == 1  # asked once


def test_engines_stagecache_does_not_support_are_said_in_one_line() -> None:
    from stagecache.engine.base import EngineInfo, unsupported

    for known in ("20.10.24+dfsg1", "26.1.5+dfsg1", "23.0.0", "29.1.2"):
        assert unsupported(EngineInfo(known, "linux/amd64")) is None
    for old in ("19.03.15", "20.9.0", "22.06.0-beta.0", "30.0.0"):
        note = unsupported(EngineInfo(old, "linux/amd64"))
        assert note is not None
        assert old in note
        assert "20.10 and 23 to 29" in note
    assert unsupported(EngineInfo("master-dockerproject-2024", "linux/amd64")) is not None


def test_key_tags_are_paired_with_their_own_images() -> None:
    """One of three key images removed between `docker images` and `docker image inspect` (review)."""
    import json

    from stagecache.process import Completed

    def image(tag: str, created: str) -> str:
        return json.dumps({"Id": f"sha256:{tag[-1] * 64}", "RepoTags": [tag], "Created": created})

    answers = {
        "images": "app:sc-a\napp:sc-b\napp:sc-c\n",
        "inspect": image("app:sc-a", "2026-01-01") + "\n" + image("app:sc-c", "2026-03-01") + "\n",
    }

    def runner(argv: object, **kwargs: object) -> Completed:
        words = list(argv)  # type: ignore[call-overload]
        return Completed(words, 0, answers["inspect" if "inspect" in words else "images"], "")

    pairs = Docker(runner=runner).key_tagged()
    assert [(ref, info.created) for ref, info in pairs] == [
        ("app:sc-a", "2026-01-01"),
        ("app:sc-c", "2026-03-01"),
    ]
