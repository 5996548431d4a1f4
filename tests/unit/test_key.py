"""Key computation on real files, with base image identities faked (no engine needed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from stagecache.errors import DockerfileError
from stagecache.key.digest import compute, diff
from stagecache.key.inputs import collect
from stagecache.key.spec import TargetSpec
from tests.fakes import Images

DOCKERFILE = """\
FROM python:3.11-slim AS base
WORKDIR /app
COPY requirements.txt ./
RUN pip install -r requirements.txt
FROM base AS prod
COPY src/ src/
FROM base AS test
COPY tests/ tests/
COPY --from=prod /app/src /app/src
ARG TOKEN
ARG LEVEL=1
"""


def make_project(root: Path) -> Path:
    files = {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": "fastapi\n",
        "src/app/__init__.py": "",
        "src/app/main.py": "print('hi')\n",
        "tests/test_main.py": "def test(): pass\n",
        "docs/readme.md": "docs\n",
        ".dockerignore": "**/__pycache__\n*.md\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def key_of(
    root: Path, stage: str = "prod", args: dict[str, str] | None = None, image: str = "sha256:aaa"
) -> str:
    spec = TargetSpec(
        name=stage, context=root, dockerfile=root / "Dockerfile", stage=stage, build_args=args or {}
    )
    return compute(collect(spec, images=Images(lambda ref: image), platform="linux/amd64"))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "checkout-one")


def test_same_project_in_two_folders_has_the_same_key(project: Path, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere" / "renamed-checkout"
    shutil.copytree(project, other, symlinks=True)
    assert key_of(project) == key_of(other)
    assert key_of(project, "test") == key_of(other, "test")


def test_content_change_changes_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "src/app/main.py").write_text("print('bye')\n")
    assert key_of(project) != before


def test_rename_changes_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "src/app/main.py").rename(project / "src/app/entry.py")
    assert key_of(project) != before


def test_mode_change_changes_the_key(project: Path) -> None:
    before = key_of(project)
    os.chmod(project / "src/app/main.py", 0o755)
    assert key_of(project) != before


def test_empty_directory_counts(project: Path) -> None:
    before = key_of(project)
    (project / "src/app/empty").mkdir()
    assert key_of(project) != before


def test_ignored_file_does_not_change_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "src/app/__pycache__").mkdir()
    (project / "src/app/__pycache__/main.cpython-311.pyc").write_bytes(b"\0\1")
    (project / "notes.md").write_text("x")
    assert key_of(project) == before


def test_file_copied_only_by_another_target_does_not_change_the_key(project: Path) -> None:
    prod, test = key_of(project), key_of(project, "test")
    (project / "tests/test_main.py").write_text("def test(): assert 1\n")
    assert key_of(project) == prod
    assert key_of(project, "test") != test


def test_file_copied_by_no_one_does_not_change_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "docs/extra.txt").write_text("x")
    (project / "README").write_text("x")
    assert key_of(project) == before


def test_mtime_does_not_change_the_key(project: Path) -> None:
    before = key_of(project)
    os.utime(project / "src/app/main.py", (1_000_000, 1_000_000))
    assert key_of(project) == before


def test_comment_in_dockerfile_does_not_change_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "Dockerfile").write_text("# a comment\n" + DOCKERFILE)
    assert key_of(project) == before


def test_instruction_in_unreached_stage_does_not_change_the_key(project: Path) -> None:
    before = key_of(project)
    (project / "Dockerfile").write_text(DOCKERFILE + "RUN echo only-test\n")
    assert key_of(project) == before
    (project / "Dockerfile").write_text(DOCKERFILE.replace("WORKDIR /app", "WORKDIR /srv"))
    assert key_of(project) != before


def test_build_args_count_only_when_declared(project: Path) -> None:
    base = key_of(project, "test")
    assert key_of(project, "test", {"UNDECLARED": "x"}) == base
    assert key_of(project, "test", {"LEVEL": "2"}) != base
    assert key_of(project, "prod", {"LEVEL": "2"}) == key_of(project, "prod")


def test_secret_args_count_but_are_redacted(project: Path) -> None:
    spec = TargetSpec("test", project, project / "Dockerfile", "test", {"TOKEN": "hunter2"})
    found = collect(spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64")
    assert "hunter2" not in repr(found.public)
    assert found.public["args"]["TOKEN"].startswith("<redacted")
    other = TargetSpec("test", project, project / "Dockerfile", "test", {"TOKEN": "hunter3"})
    assert compute(found) != compute(
        collect(other, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64")
    )


def test_base_image_identity_counts(project: Path) -> None:
    assert key_of(project, image="sha256:aaa") != key_of(project, image="sha256:bbb")


def test_symlink_target_counts(project: Path) -> None:
    os.symlink("main.py", project / "src/app/link.py")
    before = key_of(project)
    os.unlink(project / "src/app/link.py")
    os.symlink("__init__.py", project / "src/app/link.py")
    assert key_of(project) != before


def test_wildcard_sources(tmp_path: Path) -> None:
    (tmp_path / "req-a.txt").write_text("a")
    (tmp_path / "other.txt").write_text("o")
    assert files_of(tmp_path, "FROM alpine\nCOPY req*.txt /r/\n") == ["req-a.txt"]


def test_missing_source_is_an_error_with_line(project: Path) -> None:
    (project / "Dockerfile").write_text(DOCKERFILE.replace("COPY src/ src/", "COPY nothere/ src/"))
    with pytest.raises(DockerfileError, match=r":6: COPY source 'nothere/' not found"):
        key_of(project)


def test_source_excluded_by_dockerignore_is_not_found(project: Path) -> None:
    (project / ".dockerignore").write_text("src\n")
    with pytest.raises(DockerfileError, match=r"excluded by \.dockerignore"):
        key_of(project)


def test_remote_add_makes_the_target_uncacheable(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM alpine\nADD https://example.com/x.tgz /x\n")
    found = collect(
        TargetSpec("t", tmp_path, tmp_path / "Dockerfile"),
        images=Images(lambda r: "x"),
        platform="p",
    )
    assert found.uncacheable
    assert "remote source" in found.uncacheable[0]


def test_bind_mount_sources_count(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(
        "FROM alpine\nRUN --mount=type=bind,source=req.txt,target=/r cat /r\n"
    )
    (tmp_path / "req.txt").write_text("a")
    spec = TargetSpec("t", tmp_path, tmp_path / "Dockerfile")
    before = compute(collect(spec, images=Images(lambda r: "x"), platform="p"))
    (tmp_path / "req.txt").write_text("b")
    assert compute(collect(spec, images=Images(lambda r: "x"), platform="p")) != before


def test_diff_names_what_changed(project: Path) -> None:
    spec = TargetSpec("prod", project, project / "Dockerfile", "prod")
    old = collect(spec, images=Images(lambda r: "sha256:aaa"), platform="linux/amd64").public
    (project / "src/app/main.py").write_text("changed\n")
    (project / "src/app/new.py").write_text("new\n")
    (project / "src/app/__init__.py").unlink()
    new = collect(spec, images=Images(lambda r: "sha256:bbb"), platform="linux/amd64").public
    lines = diff(old, new).lines()
    assert "+ src/app/new.py" in lines
    assert "- src/app/__init__.py" in lines
    assert "~ src/app/main.py (content)" in lines
    assert any(line.startswith("base image python:3.11-slim") for line in lines)


def test_diff_after_a_key_schema_change_says_so_instead_of_listing_every_file(project: Path) -> None:
    spec = TargetSpec("prod", project, project / "Dockerfile", "prod")
    new = collect(spec, images=Images(lambda r: "sha256:aaa"), platform="linux/amd64").public
    old = {**new, "schema": new["schema"] - 1, "files": [[p, k, m, "0" * 64] for p, k, m, _ in new["files"]]}
    lines = diff(old, new).lines()
    assert len(lines) == 1
    assert lines[0].startswith(f"key schema {new['schema'] - 1} -> {new['schema']}")


def files_of(root: Path, dockerfile: str, stage: str | None = None) -> list[str]:
    (root / "Dockerfile").write_text(dockerfile)
    spec = TargetSpec("t", root, root / "Dockerfile", stage)
    return [row[0] for row in collect(spec, images=Images(lambda r: "x"), platform="p").public["files"]]


def test_sources_use_the_values_in_force_at_their_line(tmp_path: Path) -> None:
    for name in ("requirements.txt", "requirements-dev.txt", "src/a", "other/b"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    text = "FROM alpine\nARG S=\nCOPY requirements${S}.txt /r\nARG S=-dev\n"
    text += "ENV D=src\nCOPY $D /app\nENV D=other\n"
    assert files_of(tmp_path, text) == ["requirements.txt", "src", "src/a"]


class _NoEnv(Images):
    def env(self, ref: str) -> None:  # type: ignore[override]
        return None  # an image whose ENV cannot be known


def test_a_variable_we_cannot_see_counts_the_whole_context(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    (tmp_path / "Dockerfile").write_text("FROM alpine\nCOPY $FROM_BASE_IMAGE_ENV /x\n")
    spec = TargetSpec("t", tmp_path, tmp_path / "Dockerfile")
    found = collect(spec, images=_NoEnv(lambda r: "x"), platform="p")
    assert [row[0] for row in found.public["files"]] == ["Dockerfile", "a", "b"]


def test_variables_read_as_buildkit_reads_them(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    # an unset variable reads as empty: `COPY $UNSET /x` copies the whole context, as BuildKit does
    assert files_of(tmp_path, "FROM alpine\nCOPY $UNSET /x\n") == ["Dockerfile", "a", "b"]
    assert files_of(tmp_path, "FROM alpine\nARG X=ab\nCOPY ${X%b} /x\n") == ["a"]
    images = Images(lambda r: "x", env={"alpine": ["FROM_IMAGE=b"]})
    (tmp_path / "Dockerfile").write_text("FROM alpine\nCOPY $FROM_IMAGE /x\n")
    found = collect(TargetSpec("t", tmp_path, tmp_path / "Dockerfile"), images=images, platform="p")
    assert [row[0] for row in found.public["files"]] == ["b"]


def test_symlinks_are_followed_transitively_and_stay_in_the_context(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d/real").write_text("content")
    os.symlink("b", tmp_path / "a")
    os.symlink("d/real", tmp_path / "b")
    os.symlink("../d", tmp_path / "up")  # `..` stops at the context's root: this is d
    assert files_of(tmp_path, "FROM alpine\nCOPY a /x\n") == ["a", "b", "d/real"]
    assert files_of(tmp_path, "FROM alpine\nCOPY up /x\n") == ["d", "d/real", "up"]


def test_from_platform_target_name_and_syntax_directive_count(project: Path) -> None:
    before = key_of(project)
    (project / "Dockerfile").write_text(
        DOCKERFILE.replace("FROM base AS prod", "FROM --platform=linux/arm64 base AS prod")
    )
    assert key_of(project) != before
    (project / "Dockerfile").write_text("# syntax=docker/dockerfile:1.9\n" + DOCKERFILE)
    assert key_of(project) != before
    (project / "Dockerfile").write_text(DOCKERFILE)
    spec = TargetSpec("worker", project, project / "Dockerfile", "prod")
    assert compute(collect(spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64")) != before


def test_onbuild_triggers_of_a_base_image_count_the_whole_context(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM onbuild-base\nCOPY a /a\n")
    (tmp_path / "a").write_text("a")
    (tmp_path / "b").write_text("b")
    spec = TargetSpec("t", tmp_path, tmp_path / "Dockerfile")
    plain = collect(spec, images=Images(lambda r: "x"), platform="p")
    triggered = collect(spec, images=Images(lambda r: "x", onbuild={"onbuild-base"}), platform="p")
    assert [row[0] for row in plain.public["files"]] == ["a"]
    assert [row[0] for row in triggered.public["files"]] == ["Dockerfile", "a", "b"]
    assert triggered.public["onbuild"] == ["onbuild-base"]


def test_files_buildkit_will_not_send_are_warned_about(tmp_path: Path) -> None:
    (tmp_path / "z/x/y.md").mkdir(parents=True)
    (tmp_path / "z/x/y.md/f.txt").write_text("content")
    (tmp_path / ".dockerignore").write_text("*/*\n!**/*.txt\n**/*.md\n")
    (tmp_path / "Dockerfile").write_text("FROM alpine\nCOPY z /z\n")
    found = collect(
        TargetSpec("t", tmp_path, tmp_path / "Dockerfile"),
        images=Images(lambda r: "x"),
        platform="p",
    )
    assert len(found.warnings) == 1
    assert found.warnings[0].startswith("z/x/y.md/f.txt: BuildKit lists this file but will not send")
