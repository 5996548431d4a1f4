"""Secrets on the engine (issue 12, Secrets): a target with a secret build arg and two BuildKit secrets,
built and explained with every output option; then stdout and stderr, every file of the store and the
cache directory, and every process's command line seen during the build are grepped for the values.

Only the image (its history, in the docker save and the store's archive) may hold the build arg's value:
that is the documented case, and the build says so in one warning line. A BuildKit secret's value must
appear nowhere, and the RUN step that mounts it must have read it."""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stagecache.engine.docker import Docker
from stagecache.key.inputs import collect
from stagecache.key.spec import TargetSpec
from tests.fakes import Images

DOCKERFILE = """\
FROM python:3.11-slim AS app
ARG API_TOKEN
ARG RUN_ID
RUN test -n "$API_TOKEN" && echo "$RUN_ID" > /run-id
RUN --mount=type=secret,id=pip_token wc -c < /run/secrets/pip_token > /pip-token-length
RUN --mount=type=secret,id=netrc wc -c < /run/secrets/netrc > /netrc-length
COPY app.py /app/
"""
COMPOSE = """\
services:
  app:
    build:
      context: .
      args:
        API_TOKEN: ${{API_TOKEN}}
        RUN_ID: "{run_id}"
      secrets:
        - pip_token
    image: stagecache-secrets-{run_id}:latest
secrets:
  pip_token:
    environment: PIP_TOKEN
"""


class Values:
    def __init__(self, run_id: str) -> None:
        self.token = f"api-{run_id}-tok3n"  # a secret-looking build arg
        self.token2 = f"api-{run_id}-changed"  # its next value
        self.pip = f"pip-{run_id}-s3cret"  # a BuildKit secret from the environment
        self.netrc = f"netrc-{run_id}-s3cret"  # a BuildKit secret from a file

    def all(self) -> dict[str, str]:
        return {"build arg": self.token, "its next value": self.token2, "env secret": self.pip,
                "file secret": self.netrc}  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, run_id: str, engine: Docker) -> Iterator[Path]:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "compose.yaml").write_text(COMPOSE.format(run_id=run_id))
    (root / "app.py").write_text("print(1)\n")
    (tmp_path / "netrc").write_text(Values(run_id).netrc)
    (root / "pyproject.toml").write_text(
        f'[tool.stagecache]\nsecrets = {{ netrc = {{ file = "{tmp_path / "netrc"}" }} }}\n'
    )
    yield root
    done = engine.runner(
        ["docker", "images", "--quiet", "--filter", f"reference=stagecache-secrets-{run_id}"]
    )
    if ids := sorted(set(done.stdout.split())):
        engine.remove_image(*ids, force=True)


class CommandLines:
    """Every process's command line (``/proc/*/cmdline``, what ``ps`` shows any user), sampled."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            for entry in os.scandir("/proc"):
                if entry.name.isdigit():
                    try:
                        with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                            self.seen.add(fh.read())
                    except OSError:
                        pass
            time.sleep(0.002)

    def __enter__(self) -> CommandLines:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def stagecache(
    project: Path, tmp_path: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [sys.executable, "-m", "stagecache", *args],
        cwd=project,
        env={
            **os.environ,
            "STAGECACHE_STORE": str(tmp_path / "store"),
            "STAGECACHE_CACHE_DIR": str(tmp_path / "cache"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done


def contents(path: Path, data: bytes | None = None) -> Iterator[tuple[str, bytes]]:
    """A file's bytes, and those of every member of it once decompressed (zstd, tar, gzip), named."""
    data = path.read_bytes() if data is None else data
    yield str(path), data
    if data[:4] == b"\x28\xb5\x2f\xfd":
        import zstandard

        yield from contents(
            Path(f"{path}!zstd"), zstandard.ZstdDecompressor().decompressobj().decompress(data)
        )
    elif data[:2] == b"\x1f\x8b":
        yield from contents(Path(f"{path}!gzip"), gzip.decompress(data))
    elif len(data) > 262 and data[257:262] == b"ustar":
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar.getmembers():
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is not None:
                    yield from contents(Path(f"{path}!{member.name}"), handle.read())


def holders(top: Path, value: str) -> list[str]:
    return sorted(
        name
        for path in top.rglob("*")
        if path.is_file()
        for name, data in contents(path)
        if value.encode() in data
    )


def test_no_secret_is_printed_stored_or_shown_in_ps(
    engine: Docker, project: Path, tmp_path: Path, run_id: str
) -> None:
    v = Values(run_id)
    env = {"API_TOKEN": v.token, "PIP_TOKEN": v.pip}
    outputs: list[str] = []

    def run(*args: str, env: dict[str, str] = env) -> str:
        done = stagecache(project, tmp_path, env, *args)
        outputs.extend([done.stdout, done.stderr])
        return done.stdout

    with CommandLines() as ps:
        run("build", "-v", "--no-commit-tag", "app")
    first_log = outputs[1]
    assert "--build-arg API_TOKEN " in first_log  # the name only: the value is in the CLI's environment
    assert "--secret id=pip_token,env=PIP_TOKEN" in first_log
    assert "--secret id=netrc,src=" in first_log
    (warning,) = [line for line in first_log.splitlines() if "RUN sees" in line]
    assert (
        "build arg API_TOKEN: its value ends up in the image history (docker history) and in the store"
        in warning
    )
    assert "--secret" in warning
    assert any(b"buildx\0build" in line for line in ps.seen)  # the sampler saw the build

    (result,) = json.loads(run("build", "-v", "--json", "--no-commit-tag", "app"))
    assert result["outcome"] == "daemon"
    explained = run("key", "--explain", "app")
    assert "arg      API_TOKEN=<redacted " in explained
    keyed = json.loads(run("key", "--json", "app"))
    assert keyed["manifest"]["secrets"] == [["netrc", "file"], ["pip_token", "env"]]
    assert keyed["key"] == result["key"]
    changed = {**env, "API_TOKEN": v.token2}
    why = run("key", "--why", "app", env=changed)
    assert "build arg API_TOKEN: '<redacted " in why
    run("key", "--why", "--json", "app", env=changed)
    (entry,) = json.loads(run("store", "ls", "--json"))
    assert entry["key"] == result["key"]

    # The image: the RUN steps read both BuildKit secrets; the history holds the build arg's value.
    image = result["image_id"]
    lengths = engine.runner(["docker", "run", "--rm", image, "cat", "/pip-token-length", "/netrc-length"])
    assert lengths.stdout.split() == [str(len(v.pip)), str(len(v.netrc))]
    history = engine.runner(["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image]).stdout
    assert f"API_TOKEN={v.token}" in history  # BuildKit records the args a RUN sees: the warned-about case
    saved = tmp_path / "saved"
    saved.mkdir()
    engine.save_file(image, saved / "image.tar")
    in_image = {name: holders(saved, value) for name, value in v.all().items()}
    (saved / "image.tar").unlink()

    printed = "\n".join(outputs)
    in_store = {name: holders(tmp_path / "store", value) for name, value in v.all().items()}
    in_cache = {name: holders(tmp_path / "cache", value) for name, value in v.all().items()}
    in_ps = {name: [c for c in ps.seen if value.encode() in c] for name, value in v.all().items()}
    for name, value in v.all().items():
        assert value not in printed, name
        assert in_cache[name] == [], name
        assert in_ps[name] == [], name
    assert in_image["env secret"] == in_image["file secret"] == []
    assert in_image["build arg"]  # only in the image's config (its history)
    assert in_store["env secret"] == in_store["file secret"] == in_store["its next value"] == []
    assert in_store["build arg"]
    assert all("/v2/blobs/sha256/" in name for name in in_store["build arg"])  # the config, not a record


def test_a_build_arg_passed_through_the_environment_gives_the_same_image(
    engine: Docker, tmp_path: Path, run_id: str, cleanup_images: list[str]
) -> None:
    """`--build-arg NAME` with the value in the docker CLI's environment is the build BuildKit makes of
    `--build-arg NAME=VALUE`: the second build is BuildKit's cache hit (its cache key holds the value)
    and gives the same image: its config, layers and creation time (on the containerd image store the
    ID also covers a provenance attestation, which differs between any two builds). Another value in
    the environment gives another image."""
    (tmp_path / "Dockerfile").write_text(
        f'FROM python:3.11-slim\nARG API_TOKEN\nRUN echo "{run_id}" && printf %s "$API_TOKEN" | wc -c > /n\n'
    )

    def build(value: str, through_env: bool, tag: str) -> tuple[str, str]:
        cleanup_images.append(f"stagecache-secrets-{run_id}:{tag}")
        done = engine.build(
            context=tmp_path, dockerfile=tmp_path / "Dockerfile", target=None, quiet=True,
            tags=[f"stagecache-secrets-{run_id}:{tag}"], build_args={"API_TOKEN": value}, labels={},
            iidfile=tmp_path / f"{tag}.iid", env_args=["API_TOKEN"] if through_env else [],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert value not in " ".join(done.argv) or not through_env
        image = (tmp_path / f"{tag}.iid").read_text().strip()
        shown = [
            "docker",
            "image",
            "inspect",
            "--format",
            "{{json .Config}} {{json .RootFS}} {{.Created}}",
            image,
        ]
        return engine.runner(shown).stdout, done.stderr

    in_argv, _ = build("value-one", False, "argv")
    through_env, progress = build("value-one", True, "env")
    assert through_env == in_argv
    step = re.search(r"^#(\d+) \[2/2\] RUN ", progress, re.MULTILINE)
    assert step is not None, progress
    assert f"#{step.group(1)} CACHED" in progress
    other, _ = build("value-number-two", True, "other")
    assert other != in_argv
    length = engine.runner(["docker", "run", "--rm", f"stagecache-secrets-{run_id}:other", "cat", "/n"])
    assert length.stdout.strip() == str(len("value-number-two"))


def test_the_warning_fires_exactly_where_the_image_history_keeps_the_value(
    engine: Docker, tmp_path: Path, run_id: str, cleanup_images: list[str]
) -> None:
    """A build arg a RUN sees is in the image's history when the RUN is in the target's own stages; a
    stage the image only copies from leaves none. The warning says so for the one and not the other."""
    value = f"arg-{run_id}-value"
    (tmp_path / "Dockerfile").write_text(
        "FROM python:3.11-slim AS builder\nARG API_TOKEN\n"
        f'RUN printf %s "$API_TOKEN" | wc -c > /n && echo {run_id}\n'
        "FROM python:3.11-slim AS app\nCOPY --from=builder /n /n\n"
        'FROM app AS leaky\nARG API_TOKEN\nRUN test -n "$API_TOKEN"\n'
    )
    for stage, leaks in (("app", False), ("leaky", True)):
        tag = f"stagecache-secrets-{run_id}:{stage}"
        cleanup_images.append(tag)
        done = engine.build(
            context=tmp_path, dockerfile=tmp_path / "Dockerfile", target=stage, tags=[tag], quiet=True,
            build_args={"API_TOKEN": value}, labels={}, iidfile=tmp_path / "iid", env_args=["API_TOKEN"],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        saved = tmp_path / stage
        saved.mkdir()
        engine.save_file(tag, saved / "image.tar")
        assert bool(holders(saved, value)) == leaks, stage
        (saved / "image.tar").unlink()
        spec = TargetSpec(stage, tmp_path, tmp_path / "Dockerfile", stage, {"API_TOKEN": value})
        found = collect(spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64")
        assert len(found.warnings) == int(leaks), found.warnings
