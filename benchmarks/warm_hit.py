"""Warm hit: `stagecache build TARGET` with nothing changed vs a fully cached `docker buildx build --load`.

The project: a generated multi-stage Dockerfile (FROM python:3.11-slim, three COPY steps, two RUN steps
that write files) and a few hundred small source files. After both sides have built it once, each
repetition times, interleaved:

* stagecache: the whole CLI process, `stagecache build --json TARGET`; the image is in the daemon, so
  the outcome must be "daemon" (the key is computed, the image found by its key tag, nothing built);
* anchor: `docker buildx build --target TARGET --load` with every step cached.

Goal: median stagecache / median anchor <= 0.5. Also reported: the seconds stagecache itself measures
(`--json`, from computing the key to the retag), and a breakdown of the whole process: `stagecache
key` alone, the interpreter importing stagecache, and one `docker` CLI process (`docker image inspect`).
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import _common as c

TARGET = "app"
DOCKERFILE = f"""\
FROM {c.BASE_IMAGE} AS base
WORKDIR /app
COPY requirements.txt ./
RUN python -c "import shutil; shutil.copy('requirements.txt', '/app/requirements.lock')"

FROM base AS {TARGET}
COPY config/ config/
COPY src/ src/
RUN find src config -type f | sort > /app/MANIFEST
CMD ["python", "-m", "service"]
"""
PACKAGES = 12
MODULES = 25  # per package: 300 source files in all


def make_project(root: Path, run_id: str) -> int:
    """Write the project; returns the number of files in it."""
    rng = random.Random(1234)
    words = ["value", "items", "result", "config", "client", "request", "record", "payload", "index"]
    files: dict[str, str] = {
        "Dockerfile": DOCKERFILE,
        "requirements.txt": f"# {run_id}\nfastapi==0.110.0\nuvicorn==0.29.0\n",
        "config/settings.toml": "[service]\nname = 'bench'\nworkers = 2\n",
        "config/logging.ini": "[loggers]\nkeys = root\n",
        ".dockerignore": "**/__pycache__\n*.pyc\n",
    }
    for p in range(PACKAGES):
        files[f"src/service/pkg{p:02d}/__init__.py"] = f'"""Package {p}."""\n'
        for m in range(MODULES):
            body = [f'"""Module {m} of package {p}."""\n', "from __future__ import annotations\n\n"]
            for f in range(rng.randint(3, 12)):
                a, b = rng.sample(words, 2)
                body.append(
                    f"def {a}_{b}_{f}({a}: int, {b}: int = {rng.randint(0, 99)}) -> int:\n"
                    f'    """Combine {a} and {b}."""\n'
                    f"    return {a} * {rng.randint(2, 9)} + {b}\n\n\n"
                )
            files[f"src/service/pkg{p:02d}/mod{m:02d}.py"] = "".join(body)
    files["src/service/__main__.py"] = "print('service')\n"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return len(files)


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=10)
    info = c.machine()
    print(f"warm_hit: {c.describe(info)}")
    bid = c.bench_id()
    images = c.Images(bid)
    with c.temp_dir(bid) as tmp:
        project, store, cache = tmp / "project", tmp / "store", tmp / "cache"
        n_files = make_project(project, bid)
        env = {"STAGECACHE_CACHE_DIR": str(cache), **c.python_env(tmp)}
        dockerfile = str(project / "Dockerfile")
        common = ["-f", dockerfile, "--context", str(project)]
        build_args = ["build", *common, "--store", str(store), "--repository", bid, "--no-commit-tag",
                      "--json", "-q", TARGET]  # fmt: skip
        sc_build = [*c.stagecache(), *build_args]
        sc_key = [*c.stagecache(), "key", *common, TARGET]
        iidfile = tmp / "anchor.iid"
        anchor = ["docker", "buildx", "build", "--target", TARGET, "--load", "--tag", f"{bid}:anchor",
                  "--iidfile", str(iidfile), "-f", dockerfile, str(project)]  # fmt: skip
        importing = [sys.executable, "-c", "import stagecache.cli.main"]
        docker_rt = ["docker", "image", "inspect", "--format", "{{.Id}}", c.BASE_IMAGE]

        def run_anchor() -> float:
            seconds, _ = c.timed(anchor, cwd=project)
            images.add(iidfile.read_text())
            return seconds

        def run_stagecache(expect: str | None) -> tuple[float, float]:
            seconds, done = c.timed(sc_build, env=env, cwd=project)
            (res,) = json.loads(done.stdout)
            images.add(res["image_id"])
            if expect is not None and res["outcome"] != expect:
                raise c.CommandFailed(f"stagecache build: outcome {res['outcome']!r}, expected {expect!r}")
            return seconds, float(res["seconds"])

        try:
            print(f"project: {n_files} files, target {TARGET!r}; building once on each side (not timed)")
            first_anchor = run_anchor()
            first_sc, _ = run_stagecache("built")
            run_stagecache("daemon")
            run_anchor()
            times: dict[str, list[float]] = {
                "stagecache": [], "anchor": [], "in_process": [], "key": [], "import": [], "python": [],
                "docker": [],
            }  # fmt: skip
            for rep in range(args.repeat):
                for side in c.order(rep, "stagecache", "anchor"):
                    if side == "anchor":
                        times["anchor"].append(run_anchor())
                    else:
                        whole, inside = run_stagecache("daemon")
                        times["stagecache"].append(whole)
                        times["in_process"].append(inside)
                times["key"].append(c.timed(sc_key, env=env, cwd=project)[0])
                times["import"].append(c.timed(importing, env=env)[0])
                times["python"].append(c.timed([sys.executable, "-c", "pass"], env=env)[0])
                times["docker"].append(c.timed(docker_rt)[0])
            prof = c.profile(build_args, env=env, cwd=project) if args.profile else []
        finally:
            images.remove_all()

    med = {name: c.median(values) for name, values in times.items()}
    ratio = med["stagecache"] / med["anchor"]
    check = c.Check("warm hit, stagecache build / docker buildx build (warm)", ratio, 0.5, "x")
    print(f"first builds (cold, not in the ratio): anchor {c.ms(first_anchor)}, stagecache {c.ms(first_sc)}")
    print(f"medians of {args.repeat}:")
    print(f"  stagecache build (whole CLI, outcome daemon)  {c.ms(med['stagecache'])}")
    print(f"  docker buildx build --load (all cached)       {c.ms(med['anchor'])}")
    print(f"  ratio                                         {ratio:.2f}x")
    print("breakdown of the stagecache process:")
    print(f"  in-process (--json 'seconds': key + lookup)   {c.ms(med['in_process'])}")
    print(f"  stagecache key (whole CLI)                    {c.ms(med['key'])}")
    print(f"  python -c 'import stagecache.cli.main'             {c.ms(med['import'])}")
    print(f"  python -c 'pass' (interpreter start-up)       {c.ms(med['python'])}")
    print(f"  one docker CLI process (docker image inspect) {c.ms(med['docker'])}")
    for line in prof:
        print(f"  profile: {line}")
    data = c.result(
        "warm_hit", args, info, [check],
        project={"files": n_files, "target": TARGET, "dockerfile": DOCKERFILE},
        first_build_seconds={"anchor": first_anchor, "stagecache": first_sc},
        seconds=times, medians=med, ratio=ratio, profile=prof,
    )  # fmt: skip
    c.report("warm_hit", [check], data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
