"""A helper process that hashes a share of a key's files on another core.

The first key of a large context is bound by reading and hashing its files. One Python process does
that on one core, and threads do not help: the per-file work holds the GIL, and on the benchmark
machine two hashing threads were slower than one. So :func:`stagecache.speed.digests.hash_files` starts
helper processes (``python -m stagecache.speed.hashworker ROOT``) and hashes its own share meanwhile.

Protocol: stdin holds NUL-terminated fields, a file's size (as :func:`~stagecache.speed.digests.file_digest`
takes it) then its path relative to ROOT, for each file. Once every file is hashed, stdout gets their
digests, one line each, in input order. Any error ends the helper with a non-zero status and no
output; the caller then hashes that share itself, which reports the error as it always does.
"""

from __future__ import annotations

import os
import sys

from ..key.files import file_digest


def main() -> int:
    root = os.fsencode(sys.argv[1])
    fields = sys.stdin.buffer.read().split(b"\0")[:-1]
    if len(fields) % 2:
        return 2
    pairs = zip(fields[::2], fields[1::2], strict=True)
    digests = [file_digest(os.fsdecode(root + path), int(size)) for size, path in pairs]
    sys.stdout.write("".join(f"{digest}\n" for digest in digests))
    return 0


if __name__ == "__main__":
    sys.exit(main())
