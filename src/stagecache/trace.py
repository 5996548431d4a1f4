"""The ``--verbose`` lines: each docker command and Engine API call, on stderr.

The ``logging`` package would do this, but importing it costs about 13 ms per process on the benchmark
machine, for lines nobody sees unless they ask for them.
"""

from __future__ import annotations

import sys

enabled = False


def debug(message: str) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)
