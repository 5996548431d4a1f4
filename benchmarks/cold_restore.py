"""Cold daemon, store present: a store restore by stagecache vs `docker load` of a `docker save` tar.

The image: python:3.11-slim plus a layer of about 50 MB of real installed Python packages (.py sources
and compiled extension modules, copied from this interpreter's site-packages, then the standard
library if that is not enough) and a RUN that writes a file. stagecache builds it once, which puts its
layers into the store as zstd-compressed blobs; the anchor, the seed's flow, is `docker save IMAGE -o x.tar`
once. Each repetition then times, interleaved, from an image that is absent from the daemon (removed
by ID, with --force, so with all its tags):

* stagecache: the whole CLI process `stagecache build TARGET`, whose outcome must be "store" (the key
  is computed, the entry's load plan is written as a tar from its blobs, decompressed and checked as
  it streams into `docker load`);
* anchor: `docker load -i x.tar`.

The base image stays in the daemon throughout (it is never removed), as on a CI machine that keeps
its base images: the anchor still reads and sends the whole tar, base layers included (the daemon
unpacks only the layers it lacks); stagecache sends the base layers as empty files. Goals: time ratio
<= 1.0, and the bytes the entry keeps in the store <= 0.35 of the uncompressed tar.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import sysconfig
import time
from pathlib import Path

import _common as c

TARGET = "service"
DOCKERFILE = f"""\
FROM {c.BASE_IMAGE} AS {TARGET}
WORKDIR /srv
COPY packages/ /opt/packages/
COPY run-id.txt ./
RUN python -c "import pathlib; pathlib.Path('/srv/built.txt').write_text('built')"
"""


def make_payload(dest: Path, limit: int) -> tuple[int, int]:
    """Copy real package files (sorted; no __pycache__, none over 8 MB) into ``dest``, ``limit`` bytes."""
    sources = [Path(sysconfig.get_paths()["purelib"]), Path(sysconfig.get_paths()["stdlib"])]
    total = count = 0
    for source in sources:
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                src = Path(dirpath) / name
                if src.is_symlink() or not src.is_file() or name.endswith(".pyc"):
                    continue
                if src.stat().st_size > 8 * 1000 * 1000:
                    continue  # a mix of many files, not one big extension module
                target = dest / source.name / src.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target)
                total += src.stat().st_size
                count += 1
                if total >= limit:
                    return count, total
    return count, total


def stream_seconds(store: Path, key: str) -> float:
    """What stagecache's reading side costs without Docker: the entry's load stream, made from its
    blobs (decompressed and hashed), read to the end."""
    from stagecache.store.directory import DirectoryStore

    start = time.perf_counter()
    directory = DirectoryStore(store)
    entry = directory.get(key)
    assert entry is not None, key
    for _ in directory.load_stream(entry):
        pass
    return time.perf_counter() - start


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=3)
    info = c.machine()
    print(f"cold_restore: {c.describe(info)}")
    bid = c.bench_id()
    images = c.Images(bid)
    with c.temp_dir(bid) as tmp:
        project, store = tmp / "project", tmp / "store"
        (project / "packages").mkdir(parents=True)
        (project / "Dockerfile").write_text(DOCKERFILE)
        (project / "run-id.txt").write_text(bid + "\n")  # a key, and an image, of this run only
        n_files, payload = make_payload(project / "packages", 50 * 1000 * 1000)
        env = {"STAGECACHE_CACHE_DIR": str(tmp / "cache"), **c.python_env(tmp)}
        build_args = ["build", "-f", str(project / "Dockerfile"), "--context", str(project),
                      "--store", str(store), "--repository", bid, "--no-commit-tag", "--json", "-q",
                      TARGET]  # fmt: skip
        sc_build = [*c.stagecache(), *build_args]
        tar = tmp / "x.tar"

        def stagecache(expect: str) -> tuple[float, dict[str, object]]:
            seconds, done = c.timed(sc_build, env=env, cwd=project)
            (res,) = json.loads(done.stdout)
            images.add(str(res["image_id"]))
            if res["outcome"] != expect:
                raise c.CommandFailed(f"stagecache build: outcome {res['outcome']!r}, expected {expect!r}")
            return seconds, res

        def remove(image: str) -> None:
            c.run(["docker", "image", "rm", "--force", image])
            if c.image_id(image) is not None:
                raise c.CommandFailed(f"{image} is still in the daemon")
            if c.image_id(c.BASE_IMAGE) is None:
                raise c.CommandFailed(f"{c.BASE_IMAGE} is gone from the daemon")

        try:
            print(f"payload: {n_files} files, {payload / 1e6:.0f} MB; building once (not timed)")
            build_seconds, res = stagecache("built")
            image, ref = str(res["image_id"]), str(res["image"])
            save_seconds, _ = c.timed(["docker", "save", ref, "-o", str(tar)])
            (entry,) = json.loads(c.run([*c.stagecache(), "store", "--store", str(store), "ls", "--json"],
                                        env=env).stdout)  # fmt: skip
            zst_bytes, tar_bytes = int(entry["stored_bytes"]), tar.stat().st_size
            times: dict[str, list[float]] = {"stagecache": [], "anchor": [], "decompress": []}
            for rep in range(args.repeat):
                for side in c.order(rep, "stagecache", "anchor"):
                    remove(image)
                    if side == "anchor":
                        seconds, _ = c.timed(["docker", "load", "-i", str(tar)])
                        if c.image_id(ref) != image:
                            raise c.CommandFailed(f"docker load did not bring back {ref}")
                        times["anchor"].append(seconds)
                    else:
                        times["stagecache"].append(stagecache("store")[0])
                times["decompress"].append(stream_seconds(store, str(entry["key"])))
            prof: list[str] = []
            if args.profile:
                remove(image)
                prof = c.profile(build_args, env=env, cwd=project)
        finally:
            images.remove_all()

    med = {name: c.median(values) for name, values in times.items()}
    checks = [
        c.Check("cold restore time, stagecache build / docker load -i", med["stagecache"] / med["anchor"],
                1.0, "x"),
        c.Check("store size, entry's blobs / docker save tar", zst_bytes / tar_bytes, 0.35, "x"),
    ]  # fmt: skip
    print(f"image {tar_bytes / 1e6:.0f} MB as a docker save tar, {zst_bytes / 1e6:.0f} MB in the store")
    print(f"one-off: stagecache build + save into the store {build_seconds:.1f} s; docker save -o "
          f"{save_seconds:.1f} s")  # fmt: skip
    print(f"medians of {args.repeat}, image absent from the daemon, base image present:")
    print(f"  stagecache build (whole CLI, outcome store)     {c.ms(med['stagecache'])}")
    print(f"  docker load -i x.tar                            {c.ms(med['anchor'])}")
    print(f"  ratio                                           {med['stagecache'] / med['anchor']:.2f}x")
    print(f"  of which the load stream from blobs (in-process) {c.ms(med['decompress'])}")
    for line in prof:
        print(f"  profile: {line}")
    print(f"sizes: blobs {zst_bytes:,} B / tar {tar_bytes:,} B = {zst_bytes / tar_bytes:.2f}x")
    data = c.result(
        "cold_restore", args, info, checks,
        payload={"files": n_files, "bytes": payload, "dockerfile": DOCKERFILE},
        bytes={"tar": tar_bytes, "zst": zst_bytes},
        one_off_seconds={"stagecache_build_and_store": build_seconds, "docker_save": save_seconds},
        seconds=times, medians=med, profile=prof,
    )  # fmt: skip
    c.report("cold_restore", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
