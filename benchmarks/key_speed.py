"""Key speed: `stagecache key` of a 20,000-file, 500 MB context vs `cat` of the same files.

The context is generated (deterministic content, file sizes drawn from a log-normal distribution,
nested directories, mtimes an hour old) in a temp directory; the Dockerfile beside it is
`FROM python:3.11-slim` + `COPY . /ctx/`, so every file is an input. It is never built. The files are
read once with `cat` before timing, so both sides read from the page cache. Each repetition times,
interleaved:

* anchor: `find CTX -type f -print0 | xargs -0 cat > /dev/null`;
* first key: the whole CLI process `stagecache key`, with a fresh STAGECACHE_CACHE_DIR (no digests
  cached: every file is read and hashed);
* repeat key: the same command again, nothing changed (digests cached: files are only stat'ed);
* watched repeat: the same again with a watcher running for the context (`stagecache watch start`),
  after one key that wrote the watcher's memo: nothing changed, so the context is not walked;
* watched, one file changed: one file's content rewritten, then the key (the watcher reports the file,
  the target reads it: the context is walked and that file hashed again). The file is then restored.

Goals: first key / cat <= 1.5; repeat key <= 0.2 s, met through the watcher (the plain repeat is
reported beside it). Also reported: the fixed cost of the CLI (`stagecache key` of a one-file context,
and `python -c "import stagecache.cli.main"`), which no repeat key can go below. Every key computed must be
the same, with or without the watcher.
"""

from __future__ import annotations

import math
import os
import random
import sys
import time
from pathlib import Path

import _common as c

FILES = 20_000
TOTAL = 500 * 1000 * 1000
DOCKERFILE = f"FROM {c.BASE_IMAGE}\nCOPY . /ctx/\n"


def make_context(root: Path, files: int, total: int, seed: int = 20_000) -> int:
    """Write ``files`` files of ``total`` bytes in all under ``root``; returns the bytes written."""
    rng = random.Random(seed)
    raw = [rng.lognormvariate(math.log(8000), 1.5) for _ in range(files)]
    scale = total / sum(raw)
    sizes = [max(1, int(s * scale)) for s in raw]
    sizes[-1] = max(1, sizes[-1] + total - sum(sizes))
    pool = rng.randbytes(1 << 24)
    view = memoryview(pool + pool)  # any slice up to 16 MiB is contiguous
    old = time.time() - 3600  # sources are usually older than the cache of their digests
    written = 0
    for i, size in enumerate(sizes):
        parts = [f"d{rng.randrange(8)}" for _ in range(rng.randint(0, 3))]
        rel = Path(*parts, f"f{i:05d}.{rng.choice(['py', 'txt', 'json', 'bin', 'so'])}")
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        header = f"{i}\n".encode()
        body_len = max(0, size - len(header))
        start = rng.randrange(1 << 24)
        with open(path, "wb") as fh:
            fh.write(header[:size])
            remaining = body_len
            while remaining:
                n = min(remaining, 1 << 24)
                fh.write(view[start : start + n])
                remaining -= n
        os.utime(path, (old, old))
        written += size
    return written


def main() -> int:
    args = c.arguments(__doc__.splitlines()[0], default_repeat=5)
    info = c.machine()
    print(f"key_speed: {c.describe(info)}")
    bid = c.bench_id()
    with c.temp_dir(bid) as tmp:
        ctx, tiny = tmp / "ctx", tmp / "tiny"
        ctx.mkdir()
        tiny.mkdir()
        (tiny / "one.txt").write_text("one\n")
        dockerfile = tmp / "Dockerfile"
        dockerfile.write_text(DOCKERFILE)
        start = time.perf_counter()
        written = make_context(ctx, FILES, TOTAL)
        print(f"context: {FILES} files, {written / 1e6:.0f} MB, made in {time.perf_counter() - start:.1f} s")
        env = c.python_env(tmp)
        cat = f"find '{ctx}' -type f -print0 | xargs -0 cat > /dev/null"
        key_args = ["key", "-f", str(dockerfile), "--context", str(ctx)]
        key = [*c.stagecache(), *key_args]
        fixed = [*c.stagecache(), "key", "-f", str(dockerfile), "--context", str(tiny)]
        importing = [sys.executable, "-c", "import stagecache.cli.main"]
        c.run(cat)  # the page cache holds every file from here on
        # and the bytecode cache every module, those a first key imports late (its hashing helpers') too
        c.run(key, env={**env, "STAGECACHE_CACHE_DIR": str(tmp / "cache-warm-up")})
        watching = [*c.stagecache(), "watch", "start", "-f", str(dockerfile), "--context", str(ctx)]
        edited = sorted(ctx.rglob("*.py"))[0]
        original = edited.read_bytes()
        times: dict[str, list[float]] = {
            "cat": [], "first": [], "repeat": [], "watched": [], "watched_edit": [], "fixed": [], "import": []
        }  # fmt: skip
        keys: set[str] = set()
        for rep in range(args.repeat):
            cache = {**env, "STAGECACHE_CACHE_DIR": str(tmp / f"cache-{rep}")}
            for side in c.order(rep, "stagecache", "cat"):
                if side == "cat":
                    times["cat"].append(c.timed(cat)[0])
                else:
                    for name in ("first", "repeat"):
                        seconds, done = c.timed(key, env=cache)
                        times[name].append(seconds)
                        keys.add(done.stdout.strip())
            c.run(watching, env=cache)
            try:
                keys.add(c.run(key, env=cache).stdout.strip())  # writes the watcher's memo
                seconds, done = c.timed(key, env=cache)
                times["watched"].append(seconds)
                keys.add(done.stdout.strip())
                edited.write_bytes(original[::-1])
                times["watched_edit"].append(c.timed(key, env=cache)[0])
                edited.write_bytes(original)
            finally:
                c.run([*c.stagecache(), "watch", "stop", "--all"], env=cache)
            times["fixed"].append(
                c.timed(fixed, env={**env, "STAGECACHE_CACHE_DIR": str(tmp / "cache-tiny")})[0]
            )
            times["import"].append(c.timed(importing, env=env)[0])
        if len(keys) != 1:
            raise c.CommandFailed(f"stagecache key gave different keys for the same context: {sorted(keys)}")
        prof: dict[str, list[str]] = {}
        if args.profile:
            cache = {**env, "STAGECACHE_CACHE_DIR": str(tmp / "cache-profile")}
            prof["first"] = c.profile(key_args, env=cache, cwd=tmp)
            prof["repeat"] = c.profile(key_args, env=cache, cwd=tmp)

    med = {name: c.median(values) for name, values in times.items()}
    checks = [
        c.Check("first key / cat of the same files", med["first"] / med["cat"], 1.5, "x"),
        c.Check("repeat key, nothing changed (context watched)", med["watched"], 0.2, "s"),
    ]
    print(f"medians of {args.repeat} (whole processes, files in the page cache):")
    print(f"  cat of every file (find | xargs cat)        {c.ms(med['cat'])}")
    ratio = med["first"] / med["cat"]
    print(f"  stagecache key, digest cache empty          {c.ms(med['first'])}   {ratio:.2f}x cat")
    print(f"  stagecache key again, nothing changed       {c.ms(med['repeat'])}   (stat cache, no watcher)")
    print(f"  the same with a watcher on the context      {c.ms(med['watched'])}")
    print(f"  watched, one file the target reads changed  {c.ms(med['watched_edit'])}")
    print(f"  stagecache key of a one-file context        {c.ms(med['fixed'])}   (the CLI's fixed cost)")
    print(f"  python -c 'import stagecache.cli.main'           {c.ms(med['import'])}")
    of_repeat, of_watched = med["fixed"] / med["repeat"], med["fixed"] / med["watched"]
    print(f"  the fixed cost is {of_repeat:.0%} of the plain repeat key, {of_watched:.0%} of the watched one")
    for name, lines in prof.items():
        for line in lines:
            print(f"  profile ({name}): {line}")
    data = c.result(
        "key_speed", args, info, checks,
        context={"files": FILES, "bytes": written, "dockerfile": DOCKERFILE},
        key=keys.pop(), seconds=times, medians=med, profile=prof,
    )  # fmt: skip
    c.report("key_speed", checks, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
