"""The key against BuildKit on a larger sample: false hits (must be 0) and false misses (counted).

    .venv/bin/python benchmarks/key_differential.py [--repeat SEEDS] [--mutations N]

Each seed generates a project (random tree, .dockerignore with negations, three stages copying
overlapping paths), then applies N random single changes; after each, the target is built for real and
its file system compared with the previous one (tests/integration/differential.py). The anchor is the
image itself: a key must change exactly when the image's files do.
"""

from __future__ import annotations

import sys
import time

import _common as c

from stagecache.engine.docker import Docker

sys.path.insert(0, str(c.REPO))
from tests.integration.differential import Tally, run


def main() -> int:
    parser_args = c.arguments(__doc__.splitlines()[0], default_repeat=6)
    mutations = 12
    repository = c.bench_id()
    docker = Docker.local()
    total = Tally()
    started = time.monotonic()
    for seed in range(100, 100 + parser_args.repeat):
        tally = run(docker, seed=seed, mutations=mutations, repository=repository)
        total.steps += tally.steps
        total.content_changes += tally.content_changes
        total.key_changes += tally.key_changes
        total.false_hits += tally.false_hits
        total.false_misses += tally.false_misses
        print(f"seed {seed}: {tally.steps} changes, {tally.content_changes} changed the image, "
              f"{tally.key_changes} changed the key, {len(tally.false_hits)} false hits, "
              f"{len(tally.false_misses)} false misses", flush=True)  # fmt: skip
    unchanged = total.steps - total.content_changes
    miss_rate = len(total.false_misses) / unchanged if unchanged else 0.0
    print(f"{total.steps} builds in {time.monotonic() - started:.0f} s")
    for line in total.false_hits:
        print(f"  FALSE HIT   {line}")
    for line in total.false_misses:
        print(f"  false miss  {line}")
    print(f"false misses: {len(total.false_misses)} of {unchanged} changes that left the image alone "
          f"({miss_rate:.0%})")  # fmt: skip
    checks = [c.Check("false hits (image changed, key did not)", float(len(total.false_hits)), 0.0, "x")]
    data = c.result("key_differential", parser_args, c.machine(), checks, steps=total.steps,
                    image_changes=total.content_changes, key_changes=total.key_changes,
                    false_hits=total.false_hits, false_misses=total.false_misses)  # fmt: skip
    c.report("key_differential", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
