"""From a ``docker save`` stream to blobs, and from blobs back to what ``docker load`` accepts.

Saving walks the tar once: every file member becomes a blob (or is recognised as one the store
already has, by its name on engines that name members by digest, else by its digest), except the
layers of the base images, which every daemon that can compute the key already has. Each image the
save holds then gets a *load plan*: the list of members ``docker load`` needs for that one image,
in the engine's own layout (Docker 25+'s OCI layout with ``manifest.json``, 20.10's ``<id>/layer.tar``,
containerd's OCI layout with compressed blobs), each pointing at a blob, plus the two files that name
the image (``manifest.json``, ``index.json``), rewritten to hold that image alone and no name.

Loading writes that plan as a tar: headers made here, bytes streamed from the blobs as they are
checked, a base layer as an empty member (``docker load`` skips a layer whose chain it has without
reading its file). No name enters it: the two naming files are checked again as they are read.
"""

from __future__ import annotations

import json
import posixpath
import re
import tarfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple

from ..errors import StoreError
from ..refs import qualified
from .blobs import Blobs, Stored

SMALL = 16 << 20  # the naming files are read whole; anything bigger is not one
BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
INDEX_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
BASE = "base"  # a member kept as an empty file: a base image's layer
# 20.10's ``<layer id>/VERSION`` and ``/json``: ``docker load`` reads manifest.json, never these
LEGACY_METADATA = re.compile(r"[0-9a-f]{64}/(VERSION|json)")


class ForeignArchive(StoreError):
    """An archive that is not one image as stagecache saves them (more than one image, none)."""


# The files that name the image, and the annotations of an OCI index that do.
NAMED = ("manifest.json", "index.json")
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


def _without_names(name: str, data: bytes) -> bytes:
    """``manifest.json`` without ``RepoTags``, ``index.json`` without name annotations."""
    doc = json.loads(data)
    if name == "manifest.json":
        for image in doc:
            image["RepoTags"] = None
    else:
        for manifest in doc.get("manifests") or ():
            annotations = manifest.get("annotations") or {}
            for key in NAME_ANNOTATIONS:
                annotations.pop(key, None)
    return json.dumps(doc, separators=(",", ":")).encode()


def shared_prefix(diff_ids: Sequence[str], bases: Sequence[Sequence[str]]) -> int:
    """How many leading layers of an image one of its base images already provides."""
    best = 0
    for base in bases:
        n = 0
        for mine, theirs in zip(diff_ids, base, strict=False):
            if mine != theirs:
                break
            n += 1
        if n == len(base):  # only a whole base counts: its full chain is what the daemon has
            best = max(best, n)
    return best


def _check_one_image(name: str, data: bytes) -> None:
    try:
        doc = json.loads(data)
    except ValueError:
        raise ForeignArchive(f"its {name} is not JSON") from None
    images = doc if name == "manifest.json" else (doc.get("manifests") if isinstance(doc, dict) else None)
    if not isinstance(images, list) or len(images) != 1:
        count = len(images) if isinstance(images, list) else "no"
        raise ForeignArchive(f"its {name} lists {count} images, not the one its record names")
    if not isinstance(images[0], dict):
        raise ForeignArchive(f"its {name} does not describe an image")


class Cancelled(Exception):
    """The save was called off (the command was interrupted): nothing is recorded."""


class Resave(Exception):
    """A layer left out because a base image has it is needed by an image after all (the same layer
    again, further up): save once more, keeping every layer."""


class Member(NamedTuple):
    """One file of a load plan: its name in the tar, the blob that holds it ("" for a base layer),
    its size as loaded, and whether the store compressed the blob."""

    name: str
    digest: str
    size: int
    compressed: bool = False

    def as_record(self) -> list[object]:
        return [self.name, self.digest, self.size, self.compressed]


class Image(NamedTuple):
    """One image of a save: its load plan, and the blobs an OCI manifest of it lists."""

    ref: str
    members: list[Member]
    config: Stored
    layers: list[tuple[Stored | None, int, str]]  # (blob, or None for a base layer; size; diff ID)
    new_bytes: int  # bytes of blobs this save wrote that the plan uses
    unused: bool = False  # the save wrote blobs no image of it uses (the sweep removes them)


def save_into(
    stream: IO[bytes],
    refs: Sequence[str],
    blobs: Blobs,
    bases: Sequence[Sequence[Sequence[str]]],
    temp: Path,
    cancelled: Callable[[], bool] = lambda: False,
) -> list[Image]:
    """Read a ``docker save`` tar of ``refs`` from ``stream`` into ``blobs``; one plan per ref.
    ``bases[i]``: the diff IDs of the base images of ``refs[i]`` (their layers are not kept)."""
    skip = {layer for chains in bases for chain in chains for layer in chain}
    stored: dict[str, Stored] = {}  # member name -> its blob
    base_sizes: dict[str, int] = {}  # member name -> size, for base layers not kept
    named: dict[str, bytes] = {}
    links: dict[str, str] = {}  # member name -> the member it links to
    n = 0
    try:
        tar = tarfile.open(fileobj=stream, mode="r|", bufsize=1 << 20)  # noqa: SIM115
    except tarfile.TarError as exc:
        raise ForeignArchive(f"it is not a docker save archive ({exc})") from None
    with tar:
        for info in tar:
            if cancelled():
                raise Cancelled
            name = posixpath.normpath(info.name.lstrip("/"))
            if info.issym() and not LEGACY_METADATA.fullmatch(name):
                # 20.10 writes a layer it has written already (the same layer again, in this image or
                # another of the save) as a link to the first copy
                links[name] = posixpath.normpath(posixpath.join(posixpath.dirname(name), info.linkname))
                continue
            if not info.isfile() or name == "repositories" or LEGACY_METADATA.fullmatch(name):
                continue
            if name in NAMED or name == "oci-layout":
                if info.size > SMALL or name in named:
                    raise ForeignArchive(f"its {name} is not one small file")
                handle = tar.extractfile(info)
                named[name] = handle.read() if handle is not None else b""
                continue
            by_name = BLOB_NAME.fullmatch(name)
            if by_name:
                digest = "sha256:" + by_name.group(1)
                if digest in skip:
                    base_sizes[name] = info.size
                    continue
                known = blobs.known(digest)
                if known is not None:
                    stored[name] = known._replace(content_size=info.size)
                    continue
            handle = tar.extractfile(info)
            assert handle is not None
            n += 1
            part = temp.with_name(f"{temp.name}.{n}")
            if by_name:
                stored[name] = blobs.write(handle, info.size, part)
            # named otherwise (20.10's <id>/layer.tar): a base layer is known once it is read
            elif (blob := blobs.write_unless(handle, info.size, part, skip)) is not None:
                stored[name] = blob
            else:
                base_sizes[name] = info.size
    for name, target in links.items():  # a link may come before what it links to
        if target in stored:
            stored[name] = stored[target]
        elif target in base_sizes:
            base_sizes[name] = base_sizes[target]
    if "manifest.json" not in named:
        raise ForeignArchive("it has no manifest.json")
    manifest = _json(named["manifest.json"], "manifest.json")
    index = _json(named["index.json"], "index.json") if "index.json" in named else None
    images = []
    claimed: set[str] = set()  # new blobs an earlier image of this save counted already
    for ref, chains in zip(refs, bases, strict=True):
        images.append(_plan(ref, chains, manifest, index, named, stored, base_sizes, blobs, claimed))
    # Blobs this save wrote that no image uses: a base image's layers on engines that name them by a
    # digest other than their diff ID (containerd's compressed blobs). Another save may have found
    # one meanwhile, so they are left to the sweep, which waits for no save and runs alone.
    used = {m.digest for image in images for m in image.members} | {i.config.digest for i in images}
    if any(blob.new and blob.digest not in used for blob in stored.values()):
        images = [image._replace(unused=True) for image in images]
    return images


def _plan(
    ref: str,
    bases: Sequence[Sequence[str]],
    manifest: list[dict[str, Any]],
    index: dict[str, Any] | None,
    named: dict[str, bytes],
    stored: dict[str, Stored],
    base_sizes: dict[str, int],
    blobs: Blobs,
    claimed: set[str],
) -> Image:
    entry = _pick(manifest, ref, lambda image: image.get("RepoTags") or ())
    config_name = posixpath.normpath(entry["Config"])
    layer_names = [posixpath.normpath(p) for p in entry["Layers"]]
    config = stored.get(config_name)
    if config is None:
        raise ForeignArchive(f"its config {config_name} is missing")
    diff_ids = _diff_ids(b"".join(blobs.read(config.digest, compressed=config.compressed)))
    if len(diff_ids) != len(layer_names):
        raise ForeignArchive("its config and manifest.json list different layers")
    keep_from = shared_prefix(diff_ids, bases)
    members: list[Member] = []
    used: dict[str, Stored] = {}

    def add(name: str) -> None:
        blob = stored.get(name)
        if blob is None:
            raise ForeignArchive(f"{name} is missing from it")
        if any(m.name == name for m in members):  # a layer listed twice is one member of the tar
            return
        members.append(Member(name, blob.digest, blob.content_size, blob.compressed))
        used[blob.digest] = blob

    layers: list[tuple[Stored | None, int, str]] = []
    for i, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True)):
        if i < keep_from:
            size = base_sizes.get(name, stored[name].content_size if name in stored else 0)
            members.append(Member(name, "", 0))
            layers.append((None, size, diff_id))
        elif name in base_sizes:  # a base image's layer again, past the base: it is needed after all
            raise Resave(name)
        else:
            add(name)
            layers.append((stored[name], stored[name].content_size, diff_id))
    add(config_name)
    descriptors: list[dict[str, Any]] = []
    if index is not None:
        descriptor = _pick(index.get("manifests") or [], ref, _index_names)
        descriptors = [_unnamed_descriptor(descriptor)]
        for blob_name in _reachable(descriptor, stored, blobs):
            if blob_name not in {m.name for m in members}:
                add(blob_name)
    if "oci-layout" in named:
        members.insert(0, Member("oci-layout", "inline:" + named["oci-layout"].decode(errors="replace"), 0))
    one = [{**entry, "RepoTags": None}]
    members.append(Member("manifest.json", "inline:" + json.dumps(one, separators=(",", ":")), 0))
    if index is not None:
        doc = {k: v for k, v in index.items() if k != "manifests"} | {"manifests": descriptors}
        members.append(Member("index.json", "inline:" + json.dumps(doc, separators=(",", ":")), 0))
    new = sum(b.size for d, b in used.items() if b.new and d not in claimed)  # a shared layer once
    claimed.update(used)
    return Image(ref, members, config, layers, new)


def _json(data: bytes, name: str) -> Any:
    try:
        return json.loads(data)
    except ValueError:
        raise ForeignArchive(f"its {name} is not JSON") from None


def _index_names(descriptor: dict[str, Any]) -> Iterable[str]:
    annotations = descriptor.get("annotations") or {}
    return [annotations[k] for k in ("io.containerd.image.name",) if k in annotations]


def _pick(images: list[dict[str, Any]], ref: str, names: Any) -> dict[str, Any]:
    """The image of ``ref`` among those a save lists (the only one, when it lists one)."""
    if not isinstance(images, list) or not images or not all(isinstance(i, dict) for i in images):
        raise ForeignArchive("it lists no image")
    if len(images) == 1:
        return images[0]
    want = qualified(ref)
    for image in images:
        if any(qualified(n.removeprefix("docker.io/library/")) == want for n in names(image)):
            return image
    raise ForeignArchive(f"it does not list {ref}")


def _unnamed_descriptor(descriptor: dict[str, Any]) -> dict[str, Any]:
    annotations = {
        k: v for k, v in (descriptor.get("annotations") or {}).items() if k not in NAME_ANNOTATIONS
    }
    out = {k: v for k, v in descriptor.items() if k != "annotations"}
    return out | ({"annotations": annotations} if annotations else {})


def _reachable(descriptor: dict[str, Any], stored: dict[str, Stored], blobs: Blobs) -> list[str]:
    """The blob members an index descriptor leads to (indexes, manifests, configs, layers, attestations)
    that the save holds."""
    found: list[str] = []
    todo = [descriptor]
    while todo:
        item = todo.pop()
        digest = item.get("digest", "")
        name = "blobs/sha256/" + str(digest).removeprefix("sha256:")
        if name not in stored or name in found:
            continue
        found.append(name)
        media = item.get("mediaType", "")
        if media in INDEX_TYPES or media.endswith("manifest.v1+json") or media.endswith("manifest.v2+json"):
            blob = stored[name]
            try:
                doc = json.loads(b"".join(blobs.read(blob.digest, compressed=blob.compressed)))
            except ValueError:
                continue
            todo.extend(doc.get("manifests") or [])
            if isinstance(doc.get("config"), dict):
                todo.append(doc["config"])
            todo.extend(doc.get("layers") or [])
    return found


def _diff_ids(config: bytes) -> list[str]:
    try:
        diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise ForeignArchive("its image config has no rootfs") from None
    if not isinstance(diff_ids, list):
        raise ForeignArchive("its image config has no rootfs")
    return [str(d) for d in diff_ids]


# --- loading -------------------------------------------------------------------------------------------


def load_stream(
    members: Sequence[Member], blobs: Blobs, present: Sequence[Sequence[str]] = ()
) -> Iterator[bytes]:
    """The tar ``docker load`` reads for one load plan, made as it is read; every blob is checked
    against its digest on the way (:class:`~stagecache.store.blobs.BadBlob`). ``present``: diff IDs of
    images the daemon has (a stage just loaded): the layers they give go as empty members, as the base
    image's do."""
    emptied = _present_layers(members, blobs, present) if present else set()
    for member in members:
        if member.name in emptied:
            yield from _file(member.name, [], 0)
            continue
        if member.digest.startswith("inline:"):
            data = member.digest.removeprefix("inline:").encode()
            if member.name in NAMED:
                _check_one_image(member.name, data)  # exactly one image,
                data = _without_names(member.name, data)  # and no name: whoever wrote the record
            yield from _file(member.name, [data], len(data))
        elif member.digest == "":
            yield from _file(member.name, [], 0)
        else:
            yield from _file(
                member.name, blobs.read(member.digest, compressed=member.compressed), member.size
            )
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _present_layers(members: Sequence[Member], blobs: Blobs, present: Sequence[Sequence[str]]) -> set[str]:
    """The layer members of a plan whose chain one of the ``present`` images already has."""
    text = next((m.digest for m in members if m.name == "manifest.json"), "").removeprefix("inline:")
    try:
        image = json.loads(text)[0]
        layers, config_name = (
            [posixpath.normpath(p) for p in image["Layers"]],
            posixpath.normpath(image["Config"]),
        )
    except (ValueError, KeyError, IndexError, TypeError):
        return set()  # load_stream's own checks say what is wrong with it
    config = next((m for m in members if m.name == config_name and m.digest.startswith("sha256:")), None)
    if config is None:
        return set()
    diff_ids = _diff_ids(b"".join(blobs.read(config.digest, compressed=config.compressed)))
    return set(layers[: shared_prefix(diff_ids, present)]) if len(diff_ids) == len(layers) else set()


def _file(name: str, chunks: Iterable[bytes], size: int) -> Iterator[bytes]:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mode = 0o644
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    done = 0
    for chunk in chunks:
        done += len(chunk)
        if done > size:
            raise ForeignArchive(f"{name} is bigger than its record says")
        yield chunk
    if done != size:
        raise ForeignArchive(f"{name} is smaller than its record says")
    if size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - size % tarfile.BLOCKSIZE)
