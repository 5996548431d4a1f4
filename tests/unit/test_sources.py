"""The findings of issue 12, items 1 and 2, each as it was reproduced: what BuildKit reads, the key must
read (on real files, with image identities faked; the same cases are built for real in
``tests/integration/test_key_findings.py``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stagecache.errors import ConfigError, DockerfileError
from stagecache.key.digest import compute
from stagecache.key.inputs import Inputs, collect
from stagecache.key.proxies import cli_build_args
from stagecache.key.spec import TargetSpec
from stagecache.key.words import Frontend
from tests.fakes import Images


def write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def inputs(root: Path, dockerfile: str, stage: str | None = None, **kwargs: object) -> Inputs:
    (root / "Dockerfile").write_text(dockerfile)
    spec = TargetSpec("t", root, root / "Dockerfile", stage, build_args=kwargs.pop("args", {}))  # type: ignore[arg-type]
    images = kwargs.pop("images", Images(lambda ref: "sha256:" + ref))
    return collect(spec, images=images, platform="linux/amd64", **kwargs)  # type: ignore[arg-type]


def files(root: Path, dockerfile: str, stage: str | None = None, **kwargs: object) -> list[str]:
    return [row[0] for row in inputs(root, dockerfile, stage, **kwargs).public["files"]]


def key(root: Path, dockerfile: str, stage: str | None = None, **kwargs: object) -> str:
    return compute(inputs(root, dockerfile, stage, **kwargs))


# --- 1. quoting ---------------------------------------------------------------------------------------------
QUOTED = [
    'FROM scratch\nCOPY "s*" /app/\n',
    'FROM scratch\nENV D="s*"\nCOPY $D /app/\n',
    'FROM scratch\nARG SRC="s"*\nCOPY $SRC /app/\n',
    "FROM scratch\nCOPY ['s*', '/app/']\n".replace("'", '"'),  # JSON form: its words are read too
    'FROM scratch\nCOPY ["\'s\'*", "/app/"]\n',
]


@pytest.mark.parametrize("dockerfile", QUOTED)
def test_quoted_sources_are_the_files_buildkit_copies(tmp_path: Path, dockerfile: str) -> None:
    write(tmp_path, {"s1": "1", "s2": "2", "other": "o"})
    assert files(tmp_path, dockerfile) == ["s1", "s2"]
    before = key(tmp_path, dockerfile)
    (tmp_path / "s1").write_text("changed")  # was a false hit: the key never moved
    assert key(tmp_path, dockerfile) != before


def test_a_quoted_file_name_is_found(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "a"})
    assert files(tmp_path, 'FROM scratch\nCOPY "a.txt" /a/\n') == ["a.txt"]  # was refused: "not found"


def test_a_word_buildkit_cannot_read_is_refused_with_its_line(tmp_path: Path) -> None:
    write(tmp_path, {"a b": "x"})
    with pytest.raises(DockerfileError, match=r"Dockerfile:2: COPY source '\"a': .*matching double-quote"):
        files(tmp_path, 'FROM scratch\nCOPY "a b" /x/\n')  # shell form splits at the space first


# --- 2. ONBUILD of a stage of the same Dockerfile ----------------------------------------------------------
ONBUILD = "FROM busybox AS base\nONBUILD COPY trig.txt /trig.txt\nFROM base AS dev\nCOPY a.txt /\n"


def test_onbuild_triggers_of_a_parent_stage_are_read(tmp_path: Path) -> None:
    write(tmp_path, {"trig.txt": "t", "a.txt": "a"})
    assert files(tmp_path, ONBUILD, "dev") == ["a.txt", "trig.txt"]
    assert files(tmp_path, ONBUILD, "base") == []  # the trigger runs in a child only
    before = key(tmp_path, ONBUILD, "dev")
    (tmp_path / "trig.txt").write_text("changed")
    assert key(tmp_path, ONBUILD, "dev") != before


def test_onbuild_triggers_can_copy_from_a_stage(tmp_path: Path) -> None:
    text = "FROM busybox AS tools\nFROM busybox AS base\nONBUILD COPY --from=tools /x /x\nFROM base AS dev\n"
    names = [s["name"] for s in inputs(tmp_path, text, "dev").public["stages"]]
    assert names == ["tools", "base", "dev"]


# --- 3. symlinks in the middle of a source ------------------------------------------------------------------
@pytest.fixture
def linked(tmp_path: Path) -> Path:
    write(tmp_path, {"real/a.txt": "a", "real/b.txt": "b", "real/c.md": "c"})
    (tmp_path / "lnk").symlink_to("real")
    return tmp_path


def test_a_wildcard_behind_a_symlinked_directory(linked: Path) -> None:
    assert files(linked, "FROM scratch\nCOPY lnk/*.txt /app/\n") == ["lnk", "real/a.txt", "real/b.txt"]
    before = key(linked, "FROM scratch\nCOPY lnk/*.txt /app/\n")
    (linked / "real/a.txt").write_text("changed")
    assert key(linked, "FROM scratch\nCOPY lnk/*.txt /app/\n") != before


def test_a_file_behind_a_symlinked_directory(linked: Path) -> None:
    assert files(linked, "FROM scratch\nCOPY lnk/a.txt /app/\n") == ["lnk", "real/a.txt"]  # was refused


def test_a_symlinked_directory_as_source(linked: Path) -> None:
    assert files(linked, "FROM scratch\nCOPY lnk /app/\n") == [
        "lnk",
        "real",
        "real/a.txt",
        "real/b.txt",
        "real/c.md",
    ]


@pytest.mark.parametrize(
    ("target", "why"),
    [("/etc/passwd", r"'etc' does not exist \(following src -> /etc/passwd: links resolve inside"),
     ("../../outside", r"'outside' does not exist \(following src -> ../../outside"),
     ("loop", r"symlink loop at 'loop'")],
)  # fmt: skip
def test_a_link_leading_out_of_the_context_or_round_a_loop_is_refused(
    tmp_path: Path, target: str, why: str
) -> None:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "src").symlink_to(target)
    with pytest.raises(DockerfileError, match=rf"/Dockerfile:2: COPY source 'src' not found .*: {why}"):
        files(tmp_path, "FROM scratch\nCOPY src /x\n")


def test_a_link_is_resolved_inside_the_context(tmp_path: Path) -> None:
    write(tmp_path, {"etc/passwd": "root"})  # BuildKit reads /etc/passwd as the context's own
    (tmp_path / "src").symlink_to("/etc/passwd")
    assert files(tmp_path, "FROM scratch\nCOPY src /x\n") == ["etc/passwd", "src"]


def test_symlinks_inside_a_copied_directory_are_copied_as_links(tmp_path: Path) -> None:
    write(tmp_path, {"d/a": "a", "elsewhere/b": "b"})
    (tmp_path / "d/l").symlink_to("../elsewhere/b")
    assert files(tmp_path, "FROM scratch\nCOPY d /x\n") == ["d", "d/a", "d/l"]


# --- 4. hard links ------------------------------------------------------------------------------------------
def test_a_hard_link_in_place_of_a_copied_file_changes_the_key(tmp_path: Path) -> None:
    write(tmp_path, {"d/a": "same", "d/b": "same"})
    text = "FROM scratch\nCOPY d /x\n"
    before = key(tmp_path, text)
    (tmp_path / "d/b").unlink()
    os.link(tmp_path / "d/a", tmp_path / "d/b")  # same content, now one inode: BuildKit copies a link
    rows = inputs(tmp_path, text).public["files"]
    assert rows[-1] == ["d/b", "hardlink", rows[-2][2], "d/a"]
    assert key(tmp_path, text) != before


def test_a_hard_link_to_a_file_not_copied_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path, {"d/a": "same", "other": "o"})
    before = key(tmp_path, "FROM scratch\nCOPY d /x\n")
    os.link(tmp_path / "d/a", tmp_path / "elsewhere")
    assert key(tmp_path, "FROM scratch\nCOPY d /x\n") == before


# --- 5. proxy args ------------------------------------------------------------------------------------------
PROXY_NAMES = ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
               "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"]  # fmt: skip


@pytest.mark.parametrize("name", PROXY_NAMES)
def test_proxy_build_args_count_undeclared(tmp_path: Path, name: str) -> None:
    text = "FROM alpine\nRUN env > /env\n"
    plain = key(tmp_path, text)
    assert key(tmp_path, text, args={name: "http://p:3128"}) != plain
    assert key(tmp_path, text, args={name: "http://q:3128"}) != key(
        tmp_path, text, args={name: "http://p:3128"}
    )
    assert key(tmp_path, text, args={"OTHER": "x"}) == plain


def test_proxies_of_the_docker_cli_config_count(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    proxies = {"default": {"httpProxy": "http://d:1"}, "unix:///other.sock": {"httpProxy": "http://o:1"}}
    (config / "config.json").write_text(json.dumps({"proxies": proxies}))
    env = {"DOCKER_CONFIG": str(config)}
    assert cli_build_args(env, tmp_path) == {"HTTP_PROXY": "http://d:1"}
    assert cli_build_args({**env, "DOCKER_HOST": "unix:///other.sock"}, tmp_path) == {
        "HTTP_PROXY": "http://o:1"
    }
    assert cli_build_args({}, tmp_path / "nohome") == {}
    context = tmp_path / "ctx"
    context.mkdir()
    text = "FROM alpine\nRUN env > /env\n"
    plain = key(context, text)
    assert key(context, text, cli_build_args={"HTTP_PROXY": "http://d:1"}) != plain
    # what the command line gives wins, as buildx does it
    given = key(context, text, args={"HTTP_PROXY": "x"})
    assert key(context, text, args={"HTTP_PROXY": "x"}, cli_build_args={"HTTP_PROXY": "http://d:1"}) == given


def test_a_context_whose_host_cannot_be_told_counts_every_entry(tmp_path: Path) -> None:
    config = tmp_path / "docker"
    config.mkdir()
    proxies = {"default": {"httpProxy": "http://d:1"}, "tcp://h:2376": {"noProxy": "x"}}
    (config / "config.json").write_text(json.dumps({"proxies": proxies, "currentContext": "remote"}))
    assert cli_build_args({"DOCKER_CONFIG": str(config)}, tmp_path) == {
        "HTTP_PROXY": "http://d:1",
        "NO_PROXY@tcp://h:2376": "x",
    }


# --- 6. flags -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "message"),
    [("COPY --parents a /x/", "COPY --parents: not keyed by stagecache"),
     ("COPY --exclude=*.md a /x/", "COPY --exclude: not keyed by stagecache"),
     ("ADD --exclude=*.md a /x/", "ADD --exclude: not keyed by stagecache"),
     ("COPY --chmod=755 --frobnicate a /x/", "COPY --frobnicate: not a flag of the Dockerfile frontend"),
     ("RUN --device=x true", "RUN --device: not a flag of the Dockerfile frontend")],
)  # fmt: skip
def test_flags_not_keyed_are_refused_in_one_line(tmp_path: Path, line: str, message: str) -> None:
    write(tmp_path, {"a": "a"})
    with pytest.raises(DockerfileError, match=rf"/Dockerfile:2: {message}"):
        files(tmp_path, f"FROM alpine\n{line}\n")


@pytest.mark.parametrize(
    ("one", "two"),
    [("COPY --chmod=755 a /x", "COPY --chmod=700 a /x"), ("COPY --chown=1 a /x", "COPY --chown=2 a /x"),
     ("COPY a /x", "COPY --link a /x"),
     ("ADD --checksum=sha256:aa https://h/f /f", "ADD --checksum=sha256:bb https://h/f /f"),
     ("RUN <<EOF\necho 1\nEOF", "RUN <<EOF\necho 2\nEOF"), ("COPY <<EOF /x\n1\nEOF", "COPY <<EOF /x\n2\nEOF"),
     ("RUN --network=none true", "RUN --network=host true")],
)  # fmt: skip
def test_flags_and_heredocs_are_keyed(tmp_path: Path, one: str, two: str) -> None:
    write(tmp_path, {"a": "a"})
    assert key(tmp_path, f"FROM alpine\n{one}\n") != key(tmp_path, f"FROM alpine\n{two}\n")


def test_a_remote_add_with_a_checksum_is_cacheable(tmp_path: Path) -> None:
    assert not inputs(tmp_path, "FROM alpine\nADD --checksum=sha256:aa https://h/f /f\n").uncacheable
    assert inputs(tmp_path, "FROM alpine\nADD https://h/f /f\n").uncacheable


def test_mount_values_read_by_the_engines_frontend(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "a", "$X": "literal"})
    text = "FROM alpine\nARG X=a.txt\nRUN --mount=type=bind,source=$X,target=/m cat /m\n"
    new = inputs(tmp_path, text, frontend=Frontend())
    old = inputs(tmp_path, text, frontend=Frontend("0.8", expands_mounts=False))
    assert [r[0] for r in new.public["files"]] == ["a.txt"]
    assert [r[0] for r in old.public["files"]] == ["$X"]  # BuildKit 0.8 (Docker 20.10) mounts `$X`
    assert new.public["frontend"] != old.public["frontend"]
    plain = inputs(tmp_path, "FROM alpine\nRUN --mount=type=bind,source=a.txt,target=/m cat /m\n")
    assert "frontend" not in plain.public  # keys are the same on every engine where words read alike


# --- 7. one line, before any build --------------------------------------------------------------------
def test_a_from_that_is_no_stage_and_no_image_is_one_line(tmp_path: Path) -> None:
    def image_id(ref: str) -> str:
        if ref == "ghost":
            raise ConfigError(
                "base image 'ghost' is not available (pull access denied): pull or build it first"
            )
        return "sha256:x"

    with pytest.raises(
        DockerfileError, match=r"/Dockerfile:3: 'ghost' is no stage of this Dockerfile \(stages: base\)"
    ):
        inputs(tmp_path, "FROM alpine AS base\nFROM base\nCOPY --from=ghost /a /a\n", images=Images(image_id))


def test_an_unset_arg_in_a_source_is_one_line(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": "a"})
    with pytest.raises(
        DockerfileError,
        match=r"/Dockerfile:3: COPY source '\$\{SRC\}.txt' \(read as '.txt'\) not found.*SRC is not set here",
    ):
        files(tmp_path, "FROM alpine\nARG SRC\nCOPY ${SRC}.txt /x\n")
    assert files(tmp_path, "FROM alpine\nARG SRC\nCOPY ${SRC}.txt /x\n", args={"SRC": "a"}) == ["a.txt"]
