"""The ``--verbose`` lines: each docker command and Engine API call, on stderr.

The ``logging`` package would do this, but importing it costs about 13 ms per process on the benchmark
machine, for lines nobody sees unless they ask for them. Every line goes through
:func:`stagecache.redaction.text`: a secret build arg's value is never printed.
"""

from __future__ import annotations

import sys

from . import redaction

enabled = False


def debug(message: str) -> None:
    if enabled:
        print(redaction.text(message), file=sys.stderr, flush=True)
