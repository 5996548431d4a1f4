"""Warm edit: `stagecache build` of the dev target after a one-file edit vs `docker compose build`.

The project: examples/fastapi-poetry, copied to a temp dir (its compose images renamed to this run's
repository, so nothing of anyone else's is retagged). The machine is warm: both sides have built the
dev target once (BuildKit's cache holds every step, the images are in the daemon, stagecache's store
holds the image). Each repetition then, for each side in turn (the side that goes first alternates),
edits one file in src/ (a value no earlier build saw, so the edit is a real miss for both) and times:

* stagecache: the whole CLI process `stagecache build api-tests --store DIR` (the key, a BuildKit build
  in which only `COPY src/` and what follows runs), outcome "built", as on a developer's machine: the
  save policy `ci` (the default) writes nothing into the store there (STAGECACHE_SAVE=never here);
* stagecache, saving: the same as a CI job runs it (STAGECACHE_SAVE=always): the image is also
  written into the store before the process ends;
* anchor: `docker compose build api-tests` of the same target.

Reported: the median ratio stagecache / compose (goal <= 1.5, issue 13's), the same with the save
(no goal), and stagecache's own seconds (`--json`).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import _common as c

EXAMPLE = c.REPO / "examples" / "fastapi-poetry"
SERVICE = "api-tests"
EDITED = Path("src/notes_api/main.py")


def edit(project: Path, value: str) -> None:
    """Set the one line this benchmark owns in EDITED to VALUE (added at the end the first time)."""
    path = project / EDITED
    text = path.read_text()
    line = f'WARM_EDIT = "{value}"\n'
    text, count = re.subn(r'^WARM_EDIT = ".*"\n', line, text, flags=re.MULTILINE)
    path.write_text(text if count else text + "\n" + line)


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=5)
    info = c.machine()
    print(f"warm_edit: {c.describe(info)}")
    bid = c.bench_id()
    images = c.Images(bid)
    with c.temp_dir(bid) as tmp:
        project, store = tmp / "project", tmp / "store"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".venv", "__pycache__", "results"))
        compose = project / "docker-compose.yml"
        compose.write_text(compose.read_text().replace("fastapi-poetry-example:", f"{bid}:"))
        env = {"STAGECACHE_CACHE_DIR": str(tmp / "cache"), **c.python_env(tmp), "STAGECACHE_SAVE": "never"}
        env_save = {**env, "STAGECACHE_SAVE": "always"}
        build_args = ["-C", str(project), "build", SERVICE, "--store", str(store), "--json"]
        sc_build = [*c.stagecache(), *build_args]
        compose_build = ["docker", "compose", "-p", bid, "build", SERVICE]
        counter = iter(range(1_000_000))

        def stagecache(save: bool = False) -> tuple[float, float]:
            seconds, done = c.timed(sc_build, env=env_save if save else env, cwd=project)
            (res,) = json.loads(done.stdout)
            images.add(str(res["image_id"]))
            if res["outcome"] != "built":
                raise c.CommandFailed(f"stagecache build: outcome {res['outcome']!r}, expected 'built'")
            return seconds, float(res["seconds"])

        try:
            print("warming up: both sides build the dev target once (not timed)", flush=True)
            edit(project, f"{bid}-warm-{next(counter)}")
            first = stagecache(save=True)[0]
            c.run(compose_build, cwd=project)
            images.add(c.image_id(f"{bid}:dev") or "")
            names = ("stagecache", "stagecache_save", "anchor")
            times: dict[str, list[float]] = {n: [] for n in (*names, "stagecache_own", "stagecache_save_own")}
            for rep in range(args.repeat):
                for side in names[rep % 3 :] + names[: rep % 3]:  # which goes first rotates
                    edit(project, f"{bid}-{next(counter)}")
                    if side == "anchor":
                        times["anchor"].append(c.timed(compose_build, cwd=project)[0])
                        images.add(c.image_id(f"{bid}:dev") or "")
                    else:
                        whole, own = stagecache(save=side == "stagecache_save")
                        times[side].append(whole)
                        times[f"{side}_own"].append(own)
                print(f"  rep {rep + 1}: stagecache {times['stagecache'][-1]:.2f} s, saving "
                      f"{times['stagecache_save'][-1]:.2f} s, compose build {times['anchor'][-1]:.2f} s",
                      flush=True)  # fmt: skip
            prof: list[str] = []
            if args.profile:
                edit(project, f"{bid}-profile")
                prof = c.profile(build_args, env=env, cwd=project)
        finally:
            images.remove_all()

    med = {name: c.median(values) for name, values in times.items()}
    ratio = med["stagecache"] / med["anchor"]
    ratio_save = med["stagecache_save"] / med["anchor"]
    checks = [c.Check("warm one-file edit, stagecache build / docker compose build", ratio, 1.5, "x")]
    print(f"first build (cold store, warm BuildKit cache, not timed): {first:.1f} s")
    print(f"medians of {args.repeat}, one file of src/ edited before each build:")
    print(f"  stagecache build {SERVICE} (whole CLI, outcome built)   {c.ms(med['stagecache'])}")
    print(f"    of which stagecache's own seconds (--json)          {c.ms(med['stagecache_own'])}")
    print(f"  the same saving into the store (as in CI)             {c.ms(med['stagecache_save'])}")
    print(f"    of which stagecache's own seconds (--json)          {c.ms(med['stagecache_save_own'])}")
    print(f"  docker compose build {SERVICE}                         {c.ms(med['anchor'])}")
    print(f"  ratio                                                 {ratio:.2f}x")
    print(f"  ratio saving into the store (no goal)                 {ratio_save:.2f}x")
    for line in prof:
        print(f"  profile: {line}")
    data = c.result("warm_edit", args, info, checks, edited=str(EDITED), seconds=times, medians=med,
                    ratio_saving=ratio_save, profile=prof)  # fmt: skip
    c.report("warm_edit", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
