"""`stagecache test` against plain compose, on warm images (issue: the seeds' system end to end).

    .venv/bin/python benchmarks/test_run.py [--repeat N]

On examples/fastapi-poetry, with both images already built: `stagecache test api-tests` (dependencies
up and healthy, pytest in the dev image, everything torn down) against the anchor `docker compose run
--rm api-tests` followed by `docker compose down --volumes` (compose starts the healthy db itself; the
`down` is what leaves the machine as clean as stagecache does). The anchor without its `down` is shown
too. Goal: median ratio <= 1.2.
"""

from __future__ import annotations

import sys

import _common as c

EXAMPLE = c.REPO / "examples" / "fastapi-poetry"


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=5)
    with c.temp_dir("stagecache-bench-test") as tmp:
        env = {**c.python_env(tmp), "STAGECACHE_STORE": str(tmp / "store")}
        c.run([*c.stagecache(), "build", "-q", "--no-commit-tag"], env=env, cwd=EXAMPLE)  # warm images
        times: dict[str, list[float]] = {"stagecache": [], "anchor": [], "anchor_run_only": []}
        for rep in range(args.repeat):
            for side in c.order(rep, "stagecache", "anchor"):
                if side == "stagecache":
                    seconds, _ = c.timed([*c.stagecache(), "test", "api-tests", "-q"], env=env, cwd=EXAMPLE)
                    times["stagecache"].append(seconds)
                else:
                    project = [
                        "docker",
                        "compose",
                        "-p",
                        f"{c.bench_id()}",
                        "--project-directory",
                        str(EXAMPLE),
                    ]
                    run_only, _ = c.timed([*project, "run", "--rm", "-T", "api-tests"], cwd=EXAMPLE)
                    down, _ = c.timed([*project, "down", "--volumes", "--remove-orphans", "--timeout", "5"])
                    times["anchor_run_only"].append(run_only)
                    times["anchor"].append(run_only + down)
        medians = {k: c.median(v) for k, v in times.items()}
        ratio = medians["stagecache"] / medians["anchor"]
        print(f"medians of {args.repeat}:")
        print(f"  stagecache test api-tests                      {c.ms(medians['stagecache'])}")
        print(f"  docker compose run --rm api-tests + down -v    {c.ms(medians['anchor'])}")
        print(f"  docker compose run --rm api-tests (no down)    {c.ms(medians['anchor_run_only'])}")
        print(f"  ratio                                          {ratio:.2f}x "
              f"({medians['stagecache'] / medians['anchor_run_only']:.2f}x against run alone)")  # fmt: skip
        checks = [c.Check("stagecache test / compose run --rm + down", ratio, 1.2, "x")]
        data = c.result("test_run", args, c.machine(), checks, seconds=times, medians=medians)
        c.report("test_run", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
