"""Compose hit: `stagecache build SERVICE` on a compose project with nothing changed, with and without
the cached compose configuration.

The project: warm_hit's (a multi-stage Dockerfile and 300 source files) with a compose.yaml, a
compose.override.yaml and a .env, as compose finds them itself. After one build, each repetition times,
interleaved:

* cached: the whole CLI process, `stagecache build --json SERVICE` (outcome "daemon"), the compose
  configuration read from stagecache's cache;
* uncached: the same with `STAGECACHE_COMPOSE_CACHE=0`, so `docker compose config` runs as before;
* compose config: `docker compose config --format json` alone, what the cache saves;
* anchor: `docker compose build SERVICE` with every step cached.

Goal: median cached / median uncached <= 0.75 (the configuration was 70-100 ms of a ~150 ms hit).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import _common as c
import warm_hit

SERVICE = "app"


def make_project(root: Path, bid: str) -> int:
    files = warm_hit.make_project(root, bid)
    (root / "compose.yaml").write_text(
        f"services:\n  {SERVICE}:\n    build:\n      context: .\n      target: {warm_hit.TARGET}\n"
        f"      args:\n        LEVEL: ${{LEVEL:-1}}\n    image: {bid}:{SERVICE}\n"
        "    environment:\n      - LOG_LEVEL\n"
    )
    (root / "compose.override.yaml").write_text(f"services:\n  {SERVICE}:\n    ports: ['8000']\n")
    (root / ".env").write_text("LEVEL=2\n")
    return files + 3


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=10)
    info = c.machine()
    print(f"compose_hit: {c.describe(info)}")
    bid = c.bench_id()
    images = c.Images(bid)
    with c.temp_dir(bid) as tmp:
        project, store, cache = tmp / "project", tmp / "store", tmp / "cache"
        n_files = make_project(project, bid)
        env = {"STAGECACHE_CACHE_DIR": str(cache), **c.python_env(tmp)}
        uncached_env = {**env, "STAGECACHE_COMPOSE_CACHE": "0"}
        build_args = ["build", "--store", str(store), "--no-commit-tag", "--json", "-q", SERVICE]
        sc_build = [*c.stagecache(), *build_args]
        config = ["docker", "compose", "config", "--format", "json"]
        anchor = ["docker", "compose", "build", "-q", SERVICE]

        def run_stagecache(run_env: dict[str, str], expect: str | None) -> float:
            seconds, done = c.timed(sc_build, env=run_env, cwd=project)
            (res,) = json.loads(done.stdout)
            images.add(res["image_id"])
            if expect is not None and res["outcome"] != expect:
                raise c.CommandFailed(f"stagecache build: outcome {res['outcome']!r}, expected {expect!r}")
            return seconds

        try:
            print(f"project: {n_files} files, service {SERVICE!r}; building once on each side (not timed)")
            run_stagecache(env, "built")
            run_stagecache(env, "daemon")
            c.timed(anchor, cwd=project)
            images.add(c.image_id(f"{bid}:{SERVICE}") or "")
            times: dict[str, list[float]] = {"cached": [], "uncached": [], "config": [], "anchor": []}
            for rep in range(args.repeat):
                for side in c.order(rep, "cached", "uncached"):
                    times[side].append(run_stagecache(env if side == "cached" else uncached_env, "daemon"))
                times["config"].append(c.timed(config, cwd=project)[0])
                times["anchor"].append(c.timed(anchor, cwd=project)[0])
            prof = c.profile(build_args, env=env, cwd=project) if args.profile else []
        finally:
            images.remove_all()

    med = {name: c.median(values) for name, values in times.items()}
    ratio = med["cached"] / med["uncached"]
    check = c.Check("compose hit, cached configuration / docker compose config each time", ratio, 0.75, "x")
    print(f"medians of {args.repeat}:")
    print(f"  stagecache build, configuration cached        {c.ms(med['cached'])}")
    print(f"  stagecache build, STAGECACHE_COMPOSE_CACHE=0  {c.ms(med['uncached'])}")
    print(f"  ratio                                         {ratio:.2f}x")
    print(f"  docker compose config alone                   {c.ms(med['config'])}")
    print(f"  docker compose build (all cached)             {c.ms(med['anchor'])}")
    print(f"  cached hit / docker compose build             {med['cached'] / med['anchor']:.2f}x")
    for line in prof:
        print(f"  profile: {line}")
    data = c.result(
        "compose_hit", args, info, [check],
        project={"files": n_files, "service": SERVICE},
        seconds=times, medians=med, ratio=ratio, profile=prof,
    )  # fmt: skip
    c.report("compose_hit", [check], data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
