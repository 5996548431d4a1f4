from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from stagecache.engine.api import EngineAPI
from stagecache.refs import split_tag
from stagecache.store.archive import shared_prefix, write_thin


def make_save_tar(path: Path, layers: dict[str, bytes], diff_ids: list[str]) -> None:
    """A tar shaped like `docker save` output: layer dirs, a config, manifest.json."""
    with tarfile.open(path, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for name, data in layers.items():
            add(f"{name}/layer.tar", data)
            add(f"{name}/VERSION", b"1.0")
        add("config.json", json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode())
        manifest = [
            {"Config": "config.json", "RepoTags": ["x:1"], "Layers": [f"{n}/layer.tar" for n in layers]}
        ]
        add("manifest.json", json.dumps(manifest).encode())


def test_shared_prefix_needs_a_whole_base() -> None:
    assert shared_prefix(["a", "b", "c"], [["a", "b"]]) == 2
    assert shared_prefix(["a", "b", "c"], [["a", "x"]]) == 0  # a partial match is no base
    assert shared_prefix(["a", "b", "c"], [["a"], ["a", "b"], ["q"]]) == 2
    assert shared_prefix(["a"], []) == 0


def test_thin_archive_empties_base_layers_only(tmp_path: Path) -> None:
    source = tmp_path / "save.tar"
    make_save_tar(source, {"l1": b"base" * 1000, "l2": b"mine" * 10}, ["sha256:base", "sha256:mine"])
    out = bytearray()
    thin = write_thin(source, out.extend, [["sha256:base"]])
    assert thin.shared_layers == 1
    assert thin.layers == 2
    assert thin.bytes == len(out)
    with tarfile.open(fileobj=io.BytesIO(bytes(out))) as tar:
        sizes = {m.name: m.size for m in tar.getmembers()}
        assert sizes["l1/layer.tar"] == 0
        layer = tar.extractfile("l2/layer.tar")
        assert layer is not None
        assert layer.read() == b"mine" * 10
        assert "manifest.json" in sizes
        assert "config.json" in sizes


def test_without_a_matching_base_everything_is_kept(tmp_path: Path) -> None:
    source = tmp_path / "save.tar"
    make_save_tar(source, {"l1": b"base", "l2": b"mine"}, ["sha256:base", "sha256:mine"])
    out = bytearray()
    thin = write_thin(source, out.extend, [["sha256:other"]])
    assert thin.shared_layers == 0
    with tarfile.open(fileobj=io.BytesIO(bytes(out))) as tar:
        assert {m.name: m.size for m in tar.getmembers()}["l1/layer.tar"] == 4


def test_split_tag() -> None:
    assert split_tag("repo:tag") == ("repo", "tag")
    assert split_tag("repo") == ("repo", "latest")
    assert split_tag("registry:5000/repo") == ("registry:5000/repo", "latest")
    assert split_tag("registry:5000/repo:1.0") == ("registry:5000/repo", "1.0")


def test_engine_api_is_used_only_where_the_cli_would_use_that_socket(tmp_path: Path) -> None:
    sock = tmp_path / "docker.sock"
    sock.write_text("")
    home = {"DOCKER_CONFIG": str(tmp_path / "cfg")}
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}"}) == EngineAPI(str(sock))
    assert EngineAPI.detect({**home, "DOCKER_HOST": "tcp://10.0.0.1:2375"}) is None
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}", "DOCKER_CONTEXT": "remote"}) is None
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{tmp_path}/missing.sock"}) is None
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg/config.json").write_text(json.dumps({"currentContext": "remote"}))
    assert EngineAPI.detect({**home, "DOCKER_HOST": f"unix://{sock}"}) is None
