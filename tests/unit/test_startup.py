"""The start-up budget, as a test: what a warm hit and ``--version`` may import.

A warm hit is most of what a CI job or an edit-build-test loop runs, so every module it imports is paid
on every command (docs/benchmarks.md measures it). The trade is kept in the few modules on that path:
``subprocess``, ``tarfile``, ``tempfile`` and ``zstandard`` only when a process, an archive or a temp
file is really needed; records are ``NamedTuple`` there (``dataclasses`` costs ~50 ms of imports and
generated code), elsewhere dataclasses are fine. This test fails when a change pulls one of them in.

Each case runs in a fresh interpreter: the engine is a small stand-in defined in the script itself
(the shared fake imports ``tarfile``), answering as a daemon that has the key's image.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

# What no warm hit may import. Each was measured and removed from the hot path once.
NOT_ON_A_WARM_HIT = {
    "subprocess",  # a daemon hit starts no process (git is skipped when CI names the commit)
    "tarfile",  # archives: only a save or a load
    "tempfile",  # only a build (iidfile) or a save
    "zstandard",  # the store's compression: only a save or a load
    "dataclasses",  # records on the hot path are NamedTuples
    "http.client",  # the Engine API speaks through engine/unixhttp.py
    "email",
    "logging",  # -v goes through stagecache.trace
    "socket",  # unixhttp uses _socket
    "platformdirs",  # the XDG rule is spelled in project/settings.py on Linux
    "inotify_simple",  # only the watcher process
    "stagecache.store.plan",
    "stagecache.testrun",
    "stagecache.checkprod",
    "stagecache.speed.watcherd",
    "stagecache.speed.hashworker",
}

NOT_FOR_VERSION = NOT_ON_A_WARM_HIT | {
    "stagecache.key",
    "stagecache.build",
    "stagecache.keying",
    "stagecache.engine",
    "stagecache.store",
    "stagecache.project",
    "blake3",
    "json",
}

ENGINE = '''
import sys
from stagecache.engine.base import EngineInfo, ImageInfo
from stagecache.engine import docker as docker_module
from stagecache.refs import KEY_LABEL, is_key_ref, split_tag

class Answering:
    """A daemon that has every key image it is asked about, and the base image."""
    def engine(self):
        return EngineInfo("26.1.5", "linux/amd64", "1.45")
    def image_inspect(self, ref):
        if is_key_ref(ref):
            key = "sha256:" + split_tag(ref)[1].removeprefix("sc-")
            return ImageInfo("sha256:" + "1" * 64, (ref,), (), {KEY_LABEL: key}, "linux", "amd64", 1)
        return ImageInfo("sha256:" + "2" * 64, (ref,), (), {}, "linux", "amd64", 1)
    def tag(self, source, target):
        pass
    def save_file(self, image, path):  # the first run fills the store: a docker save of one layer
        import io, json, tarfile
        config = json.dumps({"rootfs": {"type": "layers", "diff_ids": ["sha256:" + "3" * 64]}}).encode()
        manifest = json.dumps([{"Config": "c.json", "RepoTags": [image], "Layers": ["l/layer.tar"]}]).encode()
        opened = tarfile.open(fileobj=path, mode="w") if hasattr(path, "write") else tarfile.open(path, "w")
        with opened as tar:
            for name, data in (("manifest.json", manifest), ("c.json", config), ("l/layer.tar", b"x")):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    def save_stream(self, images):  # as the store reads a save: streamed
        import contextlib, io
        @contextlib.contextmanager
        def stream():
            buffer = io.BytesIO()
            self.save_file(images[0], buffer)
            buffer.seek(0)
            yield buffer
        return stream()

docker_module.Docker.local = classmethod(lambda cls: Answering())
from stagecache.cli import main
code = main(sys.argv[1:])
loaded = sorted(sys.modules)
print("MODULES", __import__("json").dumps(loaded))
sys.exit(code)
'''


def _imported(args: list[str], cwd: Path, script: str) -> tuple[set[str], str]:
    env = {**os.environ, "GITHUB_SHA": "a" * 40, "STAGECACHE_CACHE_DIR": str(cwd / "cache"), "NO_COLOR": "1"}
    env.pop("STAGECACHE_STORE", None)
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    line = next(line for line in done.stdout.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES "))), done.stdout


def _forbidden(modules: set[str], names: set[str]) -> list[str]:
    return sorted(m for m in modules if m in names or any(m.startswith(n + ".") for n in names))


def test_a_warm_hit_imports_only_what_it_needs(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text("FROM python:3.11-slim AS dev\nCOPY app.py /app/\n")
    (tmp_path / "app.py").write_text("print('hi')\n")
    args = ["build", "--store", str(tmp_path / "store"), "-f", "Dockerfile", "dev"]
    _imported(args, tmp_path, ENGINE)  # the first run records the build (a write: tempfile)
    modules, out = _imported(args, tmp_path, ENGINE)
    assert "daemon" in out  # it was a hit
    assert _forbidden(modules, NOT_ON_A_WARM_HIT) == []


def test_version_imports_no_key_machinery(tmp_path: Path) -> None:
    script = """
    import sys
    from stagecache.cli import main
    try:
        main(["--version"])
    except SystemExit:
        pass
    loaded = sorted(sys.modules)
    print("MODULES", __import__("json").dumps(loaded))
    """
    modules, out = _imported([], tmp_path, script)
    assert "stagecache" in out
    assert _forbidden(modules, NOT_FOR_VERSION) == []


def test_the_forbidden_lists_can_fail() -> None:
    """The check itself: a module that is imported is found, and a submodule counts as its package."""
    assert _forbidden({"tarfile", "stagecache.key.walk", "os"}, {"tarfile", "stagecache.key"}) == [
        "stagecache.key.walk",
        "tarfile",
    ]
