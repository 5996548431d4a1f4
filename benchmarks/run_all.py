"""Run every benchmark (`make bench`), then print a summary of their verdicts.

    .venv/bin/python benchmarks/run_all.py [--repeat N] [--profile] [--only NAME ...]

replay (a commit history on a cold runner, ~10 minutes) runs on the bench lane, which it starts (root).

Each benchmark runs in its own process and writes benchmarks/results/<name>.json; the summary is read
from those files. The exit status is 0 when every benchmark ran, whether or not its goals were met
(the verdicts say that); it is 1 when one of them failed to run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import _common as c

BENCHMARKS = ("warm_hit", "compose_hit", "cold_restore", "key_speed", "key_differential", "test_run",
              "warm_edit", "replay")  # fmt: skip
# One pass over a commit history (on the bench lane, which it starts): no --repeat, no --profile.
ONE_PASS = {"replay"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeat", type=int, help="repetitions for every benchmark (default: each one's own)"
    )
    parser.add_argument("--profile", action="store_true", help="also profile stagecache (cProfile)")
    parser.add_argument("--only", nargs="+", choices=BENCHMARKS, help="run only these")
    args = parser.parse_args()
    names = args.only or BENCHMARKS
    failed: list[str] = []
    started = time.monotonic()
    for name in names:
        argv = [sys.executable, str(c.REPO / "benchmarks" / f"{name}.py")]
        if args.repeat is not None and name not in ONE_PASS:
            argv += ["--repeat", str(args.repeat)]
        if args.profile and name not in ONE_PASS:
            argv.append("--profile")
        print(f"=== {name}", flush=True)
        start = time.monotonic()
        code = subprocess.call(argv, cwd=c.REPO)
        status = "done" if code == 0 else f"FAILED (exit {code})"
        print(f"=== {name}: {status} in {time.monotonic() - start:.0f} s\n")
        if code != 0:
            failed.append(name)

    print(f"=== summary ({time.monotonic() - started:.0f} s)")
    checks: list[dict[str, object]] = []
    for name in names:
        if name in failed:
            print(f"{name:13} did not run to the end; no result")
            continue
        data = json.loads((c.RESULTS / f"{name}.json").read_text())
        if not checks:
            print(f"machine: {c.describe(data['machine'])}")
        for check in data["checks"]:
            checks.append(check)
            how = f"{data['commits']} commits" if name in ONE_PASS else f"median of {data['repeat']}"
            print(f"{name:13} {check['verdict']}  ({how})")
    met = sum(1 for check in checks if check["met"])
    print(f"{met} of {len(checks)} goals met" + (f"; failed to run: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
