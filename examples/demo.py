"""`make demo`: the seeds' story on examples/fastapi-poetry, told through stagecache.

1. build prod and dev through the cache (a fresh store: misses, BuildKit builds, images saved)
2. run the tests inside the dev image against PostgreSQL, JUnit XML out
3. prove the prod image has no dev-only package
4. start the server and call /health
5. again: both images are daemon hits (a retag)
6. the images gone from the daemon (a new CI machine): both come back from the store
7. one source file changed: prod and dev build again, and `key --why` says why
8. a summary table

It works on a copy of the example in a temporary folder, so the example itself is never changed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parent / "fastapi-poetry"
COLOR = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
BOLD, DIM, RESET = ("\033[1m", "\033[2m", "\033[0m") if COLOR else ("", "", "")


def say(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def stagecache(
    *args: str, cwd: Path, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    print(f"{DIM}$ stagecache {' '.join(args)}{RESET}", flush=True)
    argv = [sys.executable, "-m", "stagecache", *args]
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True, check=False)
    if check and done.returncode != 0:
        print(done.stdout)
        raise SystemExit(f"demo: `stagecache {' '.join(args)}` failed with exit code {done.returncode}")
    return done


def build(cwd: Path, env: dict[str, str], step: str, rows: list[list[str]]) -> list[dict[str, object]]:
    results: list[dict[str, object]] = json.loads(
        stagecache("build", "--json", "-q", cwd=cwd, env=env).stdout
    )
    for r in results:
        print(f"  {r['target']:11} {r['outcome']:7} {str(r['key'])[:19]}  {float(str(r['seconds'])):6.2f}s")
        rows.append([step, str(r["target"]), str(r["outcome"]), f"{float(str(r['seconds'])):.2f}"])
    return results


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_and_check(cwd: Path, env: dict[str, str]) -> int:
    port = free_port()
    print(
        f"{DIM}$ stagecache run api-server   # API_PORT={port}, then GET /health, then Ctrl-C{RESET}",
        flush=True,
    )
    proc = subprocess.Popen([sys.executable, "-m", "stagecache", "run", "api-server", "-q"], cwd=cwd,
                            env={**env, "API_PORT": str(port)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    status = 0
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
                    status = int(response.status)
                    print(f"  GET /health -> {status} {response.read().decode()}")
                    break
            except OSError:
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=120)
    return status


def remove_images(results: list[dict[str, object]]) -> None:
    """Take the images of these build results out of the daemon, whatever else names them."""
    for result in results:
        ids = subprocess.run(["docker", "images", "-q", str(result["image"])], capture_output=True, text=True,
                             check=False).stdout  # fmt: skip
        for image_id in set(ids.split()):
            subprocess.run(["docker", "image", "rm", "--force", image_id], capture_output=True, check=False)


def main() -> int:
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="stagecache-demo-") as tmp:
        project = Path(tmp) / "fastapi-poetry"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
        # The demo plays a CI job: its builds are saved into the store (on a laptop they are not, by default)
        env = {**os.environ, "STAGECACHE_STORE": str(Path(tmp) / "store"), "STAGECACHE_SAVE": "always"}

        say("1. Build prod and dev through the cache (an empty store)")
        first = build(project, env, "first build", rows)
        # A fresh store: whatever a previous demo left in the daemon goes, so this run shows real misses.
        if any(r["outcome"] == "daemon" for r in first):
            print(
                "  (images from an earlier demo were still in the daemon; removing them and building again)"
            )
            remove_images(first)
            shutil.rmtree(env["STAGECACHE_STORE"])  # the hit above saved them into the new store
            rows.clear()
            first = build(project, env, "first build", rows)

        say("2. Tests inside the dev image, against PostgreSQL")
        results = Path(tmp) / "results"
        test = stagecache("test", "api-tests", "--results", str(results), "-q", cwd=project, env=env)
        print(test.stdout.strip().splitlines()[-1])
        rows.append(["tests", "api-tests", "passed", "-"])

        say("3. The prod image holds no dev-only package")
        print(stagecache("check-prod", "-q", cwd=project, env=env).stdout.rstrip())

        say("4. The server answers")
        status = serve_and_check(project, env)
        rows.append(["serve", "api-server", f"/health {status}", "-"])

        say("5. Nothing changed: a hit costs a retag")
        build(project, env, "again", rows)

        say("6. A fresh daemon (a new CI machine), the store kept: load, no build")
        remove_images(first)
        build(project, env, "cold daemon", rows)

        say("7. One source file changed: both targets copy src/, both build again")
        main_py = project / "src/notes_api/main.py"
        main_py.write_text(main_py.read_text() + f"\n# a change made by the demo at {time.time()}\n")
        for target in ("api-server", "api-tests"):
            print(stagecache("key", target, "--why", cwd=project, env=env).stdout.rstrip())
        edited = build(project, env, "after an edit", rows)
        test = stagecache("test", "api-tests", "-q", cwd=project, env=env)
        print(test.stdout.strip().splitlines()[-1])

        remove_images(edited)  # unique to this run: nothing else will ever use them

        say("Summary")
        widths = [max(len(r[i]) for r in [["step", "target", "outcome", "seconds"], *rows]) for i in range(4)]
        for row in [["step", "target", "outcome", "seconds"], *rows]:
            print("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        built = sum(float(r[3]) for r in rows if r[0] == "first build")
        hit = sum(float(r[3]) for r in rows if r[0] == "again")
        print(f"\n  a build of both targets took {built:.1f}s; with nothing changed it took {hit:.2f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
