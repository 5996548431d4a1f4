"""Fakes for unit tests of pure logic and state machines: no engine, no processes."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import json
import tarfile
from collections.abc import Callable, Collection, Container, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from stagecache.engine.base import NO_CONTEXTS, Compose, EngineInfo, ImageInfo
from stagecache.errors import CommandError
from stagecache.key.spec import NO_OPTIONS, BuildOptions, BuildSecret
from stagecache.process import Completed
from stagecache.refs import is_key_ref, qualified, split_tag


class Images:
    """The key core's ImageIdentity: identities from a function, ONBUILD triggers for some refs."""

    def __init__(
        self,
        image_id: Callable[[str], str] = str,
        onbuild: Container[str] = (),
        env: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._image_id = image_id
        self._onbuild = onbuild
        self._env = env or {}

    def image_id(self, ref: str) -> str:
        return self._image_id(ref)

    def onbuild(self, ref: str) -> bool:
        return ref in self._onbuild

    def env(self, ref: str) -> Sequence[str]:
        """An image's ``ENV``: none unless given."""
        return self._env.get(ref, ())

    def image_store(self) -> str:
        return "classic"


FIXTURES = Path(__file__).parent / "fixtures" / "engine"


def fixture(name: str) -> Any:
    """A JSON file recorded from a real engine (see tests/fixtures/engine/README.md)."""
    return json.loads((FIXTURES / name).read_text())


class FakeEngine:
    """An :class:`~stagecache.engine.base.Engine` in memory, for the resolver's state machine.

    Images are ``docker image inspect`` JSON recorded from a real engine. A build makes a new image
    whose ID is the digest of its config, as Docker computes it, so that ``save_file`` and ``load``
    (which write and read the real ``docker save`` layout) give back the same ID. ``load`` refuses an
    archive whose emptied (thinned) layers the engine does not have, as ``docker load`` does.
    """

    BASE = "python:3.11-slim"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.images: dict[str, dict[str, Any]] = {}  # image ID -> inspect JSON
        self.tags: dict[str, str] = {}  # qualified reference -> image ID
        self.layers: set[str] = set()  # diff IDs the engine has
        self.on_build: Callable[[], None] | None = None  # runs while "BuildKit reads the context"
        self.build_error = ""  # non-empty: builds fail with this log
        self.build_tags: list[list[str]] = []  # the tags each build was asked to apply
        self.builds: list[tuple[str | None, dict[str, str]]] = []  # each build's stage and named contexts
        self.bakes: list[list[str]] = []  # the targets of each bake
        self._template = fixture("image-inspect-key.json")[0]
        base = fixture("image-inspect-base.json")[0]
        self._add(base, [self.BASE])
        self._version = fixture("version-20.10.json")
        self.ps_answers = ["compose-ps-healthy.json"]
        self.compose_configs: list[tuple[Path, tuple[Path, ...], tuple[str, ...]]] = []
        self.built_options: list[BuildOptions] = []  # the `options` of each build
        # each build's args passed through the environment, and its BuildKit secrets
        self.built_secrets: list[tuple[dict[str, str], list[BuildSecret]]] = []

    # --- images -------------------------------------------------------------------------------------
    def _add(self, data: dict[str, Any], tags: Sequence[str]) -> str:
        self.images[data["Id"]] = data
        self.layers.update(data["RootFS"]["Layers"])
        for tag in tags:
            self.tags[qualified(tag)] = data["Id"]
        return str(data["Id"])

    def _id(self, ref: str) -> str | None:
        return ref if ref in self.images else self.tags.get(qualified(ref))

    def use_version(self, name: str) -> None:
        """Answer ``/version`` as a recorded engine did: ``version-26.1.json``, ``version-20.10.json``."""
        self._version = fixture(name)

    def engine(self) -> EngineInfo:
        v = self._version
        return EngineInfo(v["Version"], f"{v['Os']}/{v['Arch']}", v["ApiVersion"])

    store_kind = "classic"  # what image_store() answers

    def image_store(self) -> str:
        return self.store_kind

    def image_inspect(self, ref: str) -> ImageInfo | None:
        self.calls.append("inspect")
        image_id = self._id(ref)
        if image_id is None:
            return None
        data = dict(self.images[image_id])
        data["RepoTags"] = sorted(t for t, i in self.tags.items() if i == image_id)
        return ImageInfo.from_inspect(data)

    def tag(self, source: str, target: str) -> None:
        self.calls.append("tag")
        image_id = self._id(source)
        assert image_id is not None, source
        self.tags[qualified(target)] = image_id

    def key_tagged(self) -> list[tuple[str, ImageInfo]]:
        out = []
        for ref in sorted(t for t in self.tags if is_key_ref(t)):
            info = self.image_inspect(ref)
            assert info is not None
            out.append((ref, info))
        return out

    def pull(self, ref: str) -> Completed:
        return Completed(["docker", "pull", ref], 1, "", "Error response from daemon: no registry here\n")

    def untag(self, ref: str) -> bool:
        return self.tags.pop(qualified(ref), None) is not None

    def untag_repository(self, repository: str) -> None:
        for ref in [t for t in self.tags if split_tag(t)[0] == repository]:
            del self.tags[ref]

    def remove_image(self, *refs: str, force: bool = False) -> None:
        self.calls.append("rmi")
        for ref in refs:
            self.tags.pop(qualified(ref), None)

    # --- building, saving, loading ------------------------------------------------------------------
    def build(
        self,
        *,
        context: Path,
        dockerfile: Path,
        target: str | None,
        tags: Sequence[str],
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        platform: str | None = None,
        no_cache: bool = False,
        quiet: bool = False,
        iidfile: Path,
        options: BuildOptions = NO_OPTIONS,
        env_args: Collection[str] = (),
        secrets: Sequence[BuildSecret] = (),
        build_contexts: Mapping[str, str] = NO_CONTEXTS,
    ) -> Completed:
        self.calls.append("build")
        self.builds.append((target, dict(build_contexts)))
        self.built_options.append(options)
        self.built_secrets.append(({k: build_args[k] for k in env_args}, list(secrets)))
        self.build_tags.append(list(tags))
        if self.on_build is not None:
            self.on_build()
        if self.build_error:
            return Completed(["docker", "buildx", "build"], 1, "", self.build_error)
        data = copy.deepcopy(self._template)
        data["Config"]["Labels"] = dict(labels)
        base_layers = self.images[self.tags[qualified(self.BASE)]]["RootFS"]["Layers"]
        made = f"{context}:{dockerfile}:{target}:{sorted(labels.items())}:{sorted(build_contexts.items())}"
        content = hashlib.sha256(made.encode())
        data["RootFS"]["Layers"] = [*base_layers, "sha256:" + content.hexdigest()]
        data["Id"] = "sha256:" + hashlib.sha256(_config_bytes(data)).hexdigest()
        iidfile.write_text(self._add(data, tags))
        return Completed(["docker", "buildx", "build"], 0, "", "")

    bake_error = ""  # non-empty: bakes fail with this log

    def bake(
        self, definition: Mapping[str, Any], targets: Sequence[str], *, metadata: Path, quiet: bool = False
    ) -> Completed:
        """Each bake target as a build (recorded in ``builds`` too); the IDs in bake's metadata file."""
        self.calls.append("bake")
        self.bakes.append(list(targets))
        if self.bake_error:
            return Completed(["docker", "buildx", "bake"], 1, "", self.bake_error)
        out = {}
        for name in targets:
            item = definition["target"][name]
            iid = metadata.with_name(f"{name}.iid")
            contexts = {k: v.removeprefix("docker-image://") for k, v in item.get("contexts", {}).items()}
            done = self.build(
                context=Path(item["context"]), dockerfile=Path(item["dockerfile"]), target=item.get("target"),
                tags=item["tags"], build_args=item["args"], labels=item["labels"], iidfile=iid,
                build_contexts=contexts,
            )  # fmt: skip
            if done.returncode != 0:
                return Completed(["docker", "buildx", "bake"], 1, "", done.stderr)
            out[name] = {"containerimage.config.digest": iid.read_text()}
        metadata.write_text(json.dumps(out))
        return Completed(["docker", "buildx", "bake"], 0, "", "")

    def save_file(self, image: str | Sequence[str], path: Path) -> None:
        self.calls.append("save")
        names = [image] if isinstance(image, str) else list(image)
        manifest = []
        members: dict[str, bytes] = {}
        for name in names:
            image_id = self._id(name)
            assert image_id is not None, name
            data = self.images[image_id]
            hexid = image_id.removeprefix("sha256:")
            layer_paths = [f"{layer[7:19]}/layer.tar" for layer in data["RootFS"]["Layers"]]
            manifest.append({"Config": f"{hexid}.json", "RepoTags": [name], "Layers": layer_paths})
            members[f"{hexid}.json"] = _config_bytes(data)
            for layer, member in zip(data["RootFS"]["Layers"], layer_paths, strict=True):
                members[member] = layer.encode() * 64
        with tarfile.open(path, "w") as tar:
            _add_member(tar, "manifest.json", json.dumps(manifest).encode())
            repository, tag = split_tag(names[0])  # the legacy name file docker save writes beside it
            _add_member(tar, "repositories", json.dumps({repository: {tag: "x"}}).encode())
            for member, content in members.items():
                _add_member(tar, member, content)

    @contextlib.contextmanager
    def save_stream(self, images: Sequence[str]) -> Iterator[IO[bytes]]:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "save.tar"
            self.save_file(list(images), path)
            with open(path, "rb") as fh:
                yield fh

    def load(self, chunks: Iterable[bytes]) -> str:
        self.calls.append("load")
        buffer = io.BytesIO(b"".join(chunks))
        with tarfile.open(fileobj=buffer, mode="r:") as tar:
            manifest = json.loads(_read(tar, "manifest.json"))[0]
            config_bytes = _read(tar, manifest["Config"])
            config = json.loads(config_bytes)
            for layer, member in zip(config["rootfs"]["diff_ids"], manifest["Layers"], strict=True):
                if tar.getmember(member).size == 0 and layer not in self.layers:
                    raise CommandError(["docker", "load"], 1, f"layer {layer} does not exist")
        data = copy.deepcopy(self._template)
        data["Config"]["Labels"] = config["config"]["Labels"]
        data["RootFS"]["Layers"] = config["rootfs"]["diff_ids"]
        data["Id"] = "sha256:" + hashlib.sha256(config_bytes).hexdigest()
        image_id = self._add(data, manifest.get("RepoTags") or ())
        names = manifest.get("RepoTags") or ()
        return "".join(f"Loaded image: {n}\n" for n in names) or f"Loaded image ID: {image_id}\n"

    # --- containers and compose -------------------------------------------------------------------
    # ``ps`` answers are played in order (the last one repeats): each a recorded compose-ps-*.json.
    ps_answers: list[str]
    up_error = ""  # non-empty: `compose up` fails with this stderr

    def compose_config(
        self,
        directory: Path,
        files: Sequence[Path] = (),
        *,
        project_name: str | None = None,
        profiles: Sequence[str] = (),
        env_files: Sequence[Path] = (),
    ) -> dict[str, Any]:
        self.compose_configs.append((directory, tuple(files), tuple(profiles)))
        data: dict[str, Any] = fixture("compose-config-fastapi.json")
        return data

    def compose(self, project: Compose, *args: str, capture: bool = True, check: bool = True) -> Completed:
        self.calls.append("compose " + " ".join(args))
        if args and args[0] == "up" and self.up_error:
            return Completed(["docker", "compose", *args], 1, "", self.up_error)
        return Completed(["docker", "compose", *args], 0, "", "")

    def compose_ps(self, project: Compose) -> list[dict[str, Any]]:
        name = self.ps_answers[0] if len(self.ps_answers) == 1 else self.ps_answers.pop(0)
        lines = (FIXTURES / name).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]

    def health_log(self, container: str) -> str:
        last = fixture("health-db.json")["Log"][-1]  # as Docker.health_log words it
        return f"exit {last['ExitCode']}: {str(last['Output']).strip()}"

    def project_leftovers(self, project_name: str) -> dict[str, list[str]]:
        return {"containers": [], "networks": [], "volumes": []}

    def remove_container(self, name: str) -> None:
        self.calls.append("rm " + name)

    def run_container(self, image: str, command: Sequence[str], options: Sequence[str]) -> int:
        raise NotImplementedError

    def capture_in(self, image: str, entrypoint: str, command: Sequence[str]) -> Completed:
        raise NotImplementedError

    # --- a test run's own containers and volumes ---------------------------------------------------------
    container_states: dict[str, dict[str, Any]]  # container name -> its .State (default: none)

    def container_state(self, container: str) -> dict[str, Any]:
        return dict(getattr(self, "container_states", {}).get(container, {}))

    def remove_labelled_volumes(self, label: str) -> list[str]:
        self.calls.append("volume rm " + label)
        return []


def _config_bytes(data: Mapping[str, Any]) -> bytes:
    """The image config as ``docker save`` writes it; its sha256 is the image ID."""
    config = {"config": {"Labels": data["Config"]["Labels"]}, "rootfs": {"type": "layers",
              "diff_ids": data["RootFS"]["Layers"]}}  # fmt: skip
    return json.dumps(config, sort_keys=True).encode()


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def _read(tar: tarfile.TarFile, name: str) -> bytes:
    handle = tar.extractfile(name)
    assert handle is not None, name
    return handle.read()
