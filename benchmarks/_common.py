"""Helpers shared by the benchmarks: running and timing commands, medians, verdicts, the machine, results.

Every benchmark compares stagecache against an anchor measured in the same run, interleaving the two
(and alternating which goes first) so that noise from other users of the machine and of the Docker
daemon hits both alike; it reports medians and their ratio, and a one-line verdict against the goal.
Nothing here asserts a timing: a missed goal is reported, not raised.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
# In the daemon already (`make images`); the benchmarks never pull, rebuild or remove it.
BASE_IMAGE = "python:3.11-slim"


# --- commands -------------------------------------------------------------------------------------------
class CommandFailed(RuntimeError):
    pass


def run(
    argv: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run a command (a string: through ``sh -c``) with its output captured.

    Raises :class:`CommandFailed`, with the end of its stderr, when it fails and ``check`` is set.
    """
    full_env = {**os.environ, **env} if env else None
    shell = isinstance(argv, str)
    command = argv if isinstance(argv, str) else list(argv)
    done = subprocess.run(command, env=full_env, cwd=cwd, capture_output=True, text=True, shell=shell)
    if check and done.returncode != 0:
        shown = argv if isinstance(argv, str) else " ".join(argv)
        tail = "\n".join(done.stderr.strip().splitlines()[-15:])
        raise CommandFailed(f"{shown} exited {done.returncode}:\n{tail}")
    return done


def timed(
    argv: Sequence[str] | str,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> tuple[float, subprocess.CompletedProcess[str]]:
    """Wall-clock seconds of one whole process (start-up included), and its result."""
    start = time.perf_counter()
    done = run(argv, env=env, cwd=cwd)
    return time.perf_counter() - start, done


def stagecache() -> list[str]:
    """The CLI as a user runs it: the console script next to this interpreter."""
    script = Path(sys.executable).parent / "stagecache"
    return [str(script)] if script.exists() else [sys.executable, "-m", "stagecache"]


def python_env(tmp: Path) -> dict[str, str]:
    """Environment for the stagecache processes: bytecode cached, as after ``pip install``.

    With PYTHONDONTWRITEBYTECODE set (some shells and CI images set it) and a source checkout, every
    run would compile stagecache's modules again (~50 ms here); an installed wheel has its .pyc files.
    The cache goes under ``tmp``, never into the source tree. Builds are saved into the store as in
    a CI job (``STAGECACHE_SAVE=always``); a benchmark of a developer's machine sets it back to ``ci``.
    """
    return {
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPYCACHEPREFIX": str(tmp / "pycache"),
        "STAGECACHE_SAVE": "always",
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 10 else f"{seconds:.1f} s"


# --- verdicts -------------------------------------------------------------------------------------------
@dataclass
class Check:
    """One goal: ``measured`` must be at most ``goal``. ``unit`` is "x" (a ratio) or "s" (seconds)."""

    name: str
    measured: float
    goal: float
    unit: str

    @property
    def met(self) -> bool:
        return self.measured <= self.goal

    def _fmt(self, value: float) -> str:
        return f"{value:.2f}x" if self.unit == "x" else f"{value:.3f} s"

    def verdict(self) -> str:
        measured, goal = self._fmt(self.measured), self._fmt(self.goal)
        if self.met:
            return f"MET     {self.name}: {measured} <= goal {goal}"
        return f"MISSED  {self.name}: {measured} > goal {goal} ({self.measured / self.goal:.1f}x the goal)"

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": round(self.measured, 4),
            "goal": self.goal,
            "unit": self.unit,
            "met": self.met,
            "verdict": self.verdict(),
        }


# --- the machine ----------------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) / 1024 / 1024
                break
    server = run(["docker", "version", "--format", "{{.Server.Version}}"], check=False).stdout.strip()
    driver = run(["docker", "info", "--format", "{{.Driver}}"], check=False).stdout.strip()
    buildx = run(["docker", "buildx", "version"], check=False).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "kernel": platform.release(),
        "docker_server": server or "unknown",
        "docker_storage_driver": driver or "unknown",
        "buildx": buildx or "unknown",
        "python": platform.python_version(),
    }


def describe(info: Mapping[str, Any]) -> str:
    return (
        f"{info['cpu']}, {info['cores']} cores, {info['ram_gb']} GB RAM, kernel {info['kernel']}, "
        f"Docker {info['docker_server']} ({info['docker_storage_driver']}), Python {info['python']}"
    )


# --- the run --------------------------------------------------------------------------------------------
def preflight() -> None:
    """Stop with a clear message when the engine or the base image is missing (`make bench` sets both up)."""
    if run(["docker", "version", "--format", "{{.Server.Version}}"], check=False).returncode != 0:
        raise SystemExit("no Docker engine answers: run `make engine` (or scripts/ensure-engine)")
    if image_id(BASE_IMAGE) is None:
        raise SystemExit(f"{BASE_IMAGE} is not in the Docker engine: run `make images`")


def arguments(description: str, default_repeat: int) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--repeat",
        type=int,
        default=default_repeat,
        help=f"interleaved repetitions; medians are reported (default {default_repeat})",
    )
    parser.add_argument("--profile", action="store_true", help="also profile stagecache (cProfile)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    preflight()
    return args


def bench_id() -> str:
    """A name no other run or agent uses: images and temp dirs of this run carry it."""
    return f"stagecache-bench-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def temp_dir(name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def order(rep: int, first: str, second: str) -> tuple[str, str]:
    """Alternate which side goes first, so neither always runs right after the other's warm-up."""
    return (first, second) if rep % 2 == 0 else (second, first)


class Images:
    """Every image a benchmark makes, removed at the end (by ID, with all its tags)."""

    def __init__(self, repository: str) -> None:
        self.repository = repository
        self.ids: set[str] = set()

    def add(self, image_id: str) -> None:
        if image_id:
            self.ids.add(image_id.strip())

    def remove_all(self) -> None:
        listed = run(
            ["docker", "image", "ls", "--no-trunc", "--filter", f"reference={self.repository}",
             "--format", "{{.ID}}"],
            check=False,
        )  # fmt: skip
        ids = self.ids | {line.strip() for line in listed.stdout.splitlines() if line.strip()}
        for image_id in sorted(ids):
            run(["docker", "image", "rm", "--force", image_id], check=False)


def image_id(ref: str) -> str | None:
    done = run(["docker", "image", "inspect", "--format", "{{.Id}}", ref], check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def profile(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, top: int = 12) -> list[str]:
    """Run ``python -m stagecache ARGV`` under cProfile; the top functions by own time, as text lines."""
    import pstats

    with tempfile.TemporaryDirectory(prefix="stagecache-bench-prof-") as tmp:
        out = Path(tmp) / "prof"
        run([sys.executable, "-m", "cProfile", "-o", str(out), "-m", "stagecache", *argv], env=env, cwd=cwd)
        stats = pstats.Stats(str(out))
        total: float = stats.total_tt  # type: ignore[attr-defined]
        raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    rows = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    lines = [f"total {total:.3f} s in the profiled process"]
    for (filename, line, func), (_cc, calls, tottime, cumtime, _callers) in rows:
        where = func if filename == "~" else f"{_short_path(filename)}:{line}({func})"
        lines.append(f"{tottime:7.3f} s own {cumtime:7.3f} s cum {calls:8d} calls  {where}")
    return lines


def _short_path(filename: str) -> str:
    parts = Path(filename).parts
    for anchor in ("stagecache", "site-packages", "lib"):
        if anchor in parts:
            i = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[i:])
    return filename


def write_result(name: str, data: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def revision() -> dict[str, Any]:
    """The commit measured, and whether ``src/`` differed from it (then the numbers are of the work tree)."""
    head = run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, check=False).stdout.strip()
    changed = run(["git", "status", "--porcelain", "--", "src"], cwd=REPO, check=False).stdout.strip()
    return {"commit": head or "unknown", "src_modified": bool(changed)}


def result(
    name: str, args: argparse.Namespace, info: Mapping[str, Any], checks: Sequence[Check], **extra: Any
) -> dict[str, Any]:
    return {
        "benchmark": name,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "revision": revision(),
        "repeat": args.repeat,
        "machine": dict(info),
        "checks": [c.as_json() for c in checks],
        **extra,
    }


def report(name: str, checks: Sequence[Check], data: dict[str, Any]) -> None:
    """Print the verdicts and write the JSON result."""
    for check in checks:
        print(check.verdict())
    path = write_result(name, data)
    print(f"result written to {path.relative_to(REPO)}")
