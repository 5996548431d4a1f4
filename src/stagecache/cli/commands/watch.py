"""``stagecache watch start|stop|status``."""

from __future__ import annotations

import argparse

from ...errors import ExitCode
from ...project.values import iso
from ...speed import watchctl
from ..context import Context
from ..render import dump_json, table


def watch(args: argparse.Namespace, ctx: Context) -> int:
    out = ctx.out
    if args.watch_command == "status":
        running = watchctl.running()
        if args.json:
            dump_json([{**s, "started": _since(s)} for s in running], out)
            return ExitCode.OK
        rows = [["CONTEXT", "PID", "SINCE", "DIRECTORIES", "CHANGES SEEN"]]
        for s in running:
            rows.append([str(s.get("root")), str(s.get("pid")), _since(s) or "",
                         str(s.get("directories")), str(s.get("changes"))])  # fmt: skip
        table(rows, out)
        print(f"{len(running)} watcher(s) running; sockets in {watchctl.watch_dir()}", file=out)
        return ExitCode.OK
    if args.watch_command == "stop" and args.all:
        stopped = watchctl.stop_all()
        for status in stopped:
            print(f"stopped the watcher of {status.get('root')}", file=out)
        print(f"{len(stopped)} watcher(s) stopped", file=out)
        return ExitCode.OK
    # A Dockerfile project needs no engine to find its contexts (a compose file is read through one).
    contexts = watchctl.contexts(ctx.app(reachable=False).settings, args.targets)
    if args.watch_command == "start":
        for context, state in watchctl.start(contexts):
            print(f"{context}: {state}", file=out)
    else:
        for context, was_running in watchctl.stop(contexts):
            print(f"{context}: {'watcher stopped' if was_running else 'no watcher running'}", file=out)
    return ExitCode.OK


def _since(status: dict[str, object]) -> str | None:
    started = status.get("started")
    return iso(float(started)) if isinstance(started, (int, float)) else None
