"""``stagecache key`` and ``stagecache build``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ...errors import ExitCode
from ...project import choose
from ...project.values import iso
from ...project.vcs import CommitProbe
from ..context import Context
from ..render import Output, dump_json, short

if TYPE_CHECKING:
    from ...build import Result
    from ...project.settings import Target
    from ...why import Why


def key(args: argparse.Namespace, ctx: Context) -> int:
    app = ctx.app()
    target = choose.single_target(app.settings, args.target)
    resolver = app.resolver(use_store=False)
    if args.why:
        from ...why import why

        found = why(resolver, app.records(), target)
        if args.json:
            dump_json(why_json(found), ctx.out)
        else:
            show_why(found, ctx.out)
        return ExitCode.OK
    key, inputs = resolver.key(target)
    if args.json:  # with --explain too: the manifest is the explanation
        dump_json({"target": target.name, "key": key, "manifest": inputs.public}, ctx.out, sort_keys=True)
    elif args.explain:
        explain(target, key, inputs.public, ctx.out)
    else:
        print(key, file=ctx.out)
    return ExitCode.OK


def why_json(found: Why) -> dict[str, object]:
    changes = found.changes
    return {
        "target": found.target,
        "state": found.state,
        "key": found.key,
        "last_key": found.last_key,
        "last_built": iso(found.recorded) if found.recorded is not None else None,
        "changes": None
        if changes is None
        else {
            "added": changes.added,
            "removed": changes.removed,
            "modified": changes.modified,
            "other": changes.other,
        },
    }


def show_why(found: Why, out: Output) -> None:
    if found.last_key is None:
        print(f"{found.target}: no recorded build to compare with; key {found.key}", file=out)
    elif found.changes is None:
        print(f"{found.target}: unchanged since the last build ({short(found.key)})", file=out)
    else:
        print(f"{found.target}: {short(found.last_key)} -> {short(found.key)}; what changed:", file=out)
        for line in found.changes.lines() or ["(a change the manifest cannot name, e.g. a secret build arg)"]:
            print(f"  {line}", file=out)


def explain(target: Target, key: str, manifest: dict[str, Any], out: Output) -> None:
    print(f"target   {target.name} (stage {manifest['target']}, {manifest['platform']})", file=out)
    print(f"key      {key}", file=out)
    stages = " -> ".join(f"{s['name']} (from {s['from']})" for s in manifest["stages"])
    print(f"stages   {stages}", file=out)
    for ref, ident in sorted(manifest["images"].items()):
        print(f"image    {ref} = {ident}", file=out)
    for name, value in sorted(manifest["args"].items()):
        print(f"arg      {name}={value}", file=out)
    for name, value in sorted(manifest.get("build_options", {}).items()):
        print(f"option   {name}={value}", file=out)  # compose build options that change RUN steps
    files = manifest["files"]
    print(f"files    {len(files)} entries from the context", file=out)
    for path, kind, mode, detail in files:
        shown = detail[:12] if kind == "file" else (f"-> {detail}" if kind == "symlink" else "")
        print(f"  {kind:7} {mode:>6}  {shown:14} {path}", file=out)
    for reason in manifest.get("uncacheable", []):
        print(f"uncacheable  {reason}", file=out)


def build(args: argparse.Namespace, ctx: Context) -> int:
    app = ctx.app()
    settings = app.settings
    targets = settings.select(args.targets)
    resolver = app.resolver(use_store=not args.no_store)
    from ...build import build_targets

    # git runs on another core while the keys are computed; its answer is read when the tags are applied
    commit = None if args.no_commit_tag else CommitProbe(settings.root)

    def report(result: Result) -> None:
        if not args.json:
            ctx.reporter.step(result.target, "done")
            print(f"{result.target}  {result.outcome:6}  {short(result.key)}  {result.seconds:6.2f}s  "
                  + " ".join(result.tags), file=ctx.out)  # fmt: skip
            ctx.out.flush()

    results = build_targets(resolver, targets, siblings=list(settings.targets.values()),
                            extra_tags=args.tag or [], commit=commit, rebuild=args.rebuild,
                            save=not args.no_store, quiet=args.quiet, on_result=report)  # fmt: skip
    if args.json:
        dump_json([r.as_json() for r in results], ctx.out)
    return ExitCode.OK
