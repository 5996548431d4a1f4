"""``stagecache store ls|prune|verify`` (no engine needed) and ``stagecache images prune``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError, ExitCode
from ...project.values import iso, iso_text
from ..context import Context
from ..render import Output, dump_json, mb, short, table

if TYPE_CHECKING:
    from ...store.directory import DirectoryStore
    from ...store.entry import Entry


def store(args: argparse.Namespace, ctx: Context) -> int:
    from ...app import store_for

    where = store_for(Path(args.project_dir), args.store)
    if args.store_command == "ls":
        return ls(where, args.json, ctx.out)
    if args.store_command == "prune":
        return prune(where, args, ctx.out)
    return verify(where, args.json, ctx.out, repair=args.repair)


def entry_json(entry: Entry) -> dict[str, object]:
    return {**entry._asdict(), "created": iso(entry.created), "last_used": iso(entry.last_used)}


def ls(where: DirectoryStore, as_json: bool, out: Output) -> int:
    entries = where.entries()
    if as_json:
        dump_json([entry_json(e) for e in entries], out)
        return ExitCode.OK
    rows = [["KEY", "TARGET", "REPOSITORY", "STORED", "ADDED", "IMAGE SIZE", "CREATED", "LAST USED"]]
    for e in entries:
        rows.append([short(e.key), e.target, e.repository, mb(e.stored_bytes), mb(e.new_bytes),
                     mb(e.image_bytes), iso(e.created), iso(e.last_used)])  # fmt: skip
    table(rows, out)
    # STORED counts the blobs an entry uses, shared ones too; the total counts each blob once
    print(f"{len(entries)} entries, {mb(where.total_bytes(entries))} in {where.root}", file=out)
    return ExitCode.OK


def prune(where: DirectoryStore, args: argparse.Namespace, out: Output) -> int:
    from ...project.values import parse_duration, parse_size

    if args.max_size is None and args.keep is None and args.older_than is None:
        raise ConfigError("store prune: give --max-size, --keep or --older-than")
    removed = where.prune(
        max_size=parse_size(args.max_size, "--max-size") if args.max_size is not None else None,
        keep=args.keep,
        older_than=parse_duration(args.older_than) if args.older_than is not None else None,
        dry_run=args.dry_run,
    )
    if args.json:
        dump_json({"dry_run": args.dry_run, "removed": [entry_json(e) for e in removed]}, out)
        return ExitCode.OK
    verb = "would remove" if args.dry_run else "removed"
    for e in removed:
        print(f"{verb} {short(e.key)}  {e.target}  (uses {mb(e.stored_bytes)})", file=out)
    print(f"{verb} {len(removed)} entries; the store now holds {mb(where.total_bytes())}", file=out)
    return ExitCode.OK


def verify(where: DirectoryStore, as_json: bool, out: Output, *, repair: bool = False) -> int:
    """Damaged archives are removed as they are found; stray files and records that do not check are
    reported (every command skips them), and removed with ``--repair``."""
    problems = where.verify()
    others = where.repair() if repair else where.problems()
    fate = "removed" if repair else "skipped; `store verify --repair` removes it"
    if as_json:
        damaged = [{**entry_json(entry), "problem": problem} for entry, problem in problems]
        strays = [{"path": str(path), "problem": problem, "removed": repair} for path, problem in others]
        dump_json({"ok": len(where.entries()), "damaged": damaged, "other": strays}, out)
    else:
        for entry, problem in problems:
            print(f"{short(entry.key)}  {entry.target}: {problem}; removed", file=out)
        for path, problem in others:
            print(f"{path}: {problem}; {fate}", file=out)
        removed = " removed" if repair and others else ""
        summary = f"{len(where.entries())} entries ok, {len(problems)} damaged and removed"
        print(f"{summary}, {len(others)} other problem(s){removed}", file=out)
    return ExitCode.FAILED if problems or others else ExitCode.OK


def images(args: argparse.Namespace, ctx: Context) -> int:
    from ...store.daemon import prune_key_tags

    if args.keep < 1:
        raise ConfigError("images prune --keep: keep at least 1 key per target")
    untagged = prune_key_tags(ctx.engine(), keep=args.keep, dry_run=args.dry_run, repository=args.repository)
    if args.json:
        rows = [{**u.as_json(), "created": iso_text(u.created)} for u in untagged]
        dump_json({"dry_run": args.dry_run, "keep": args.keep, "untagged": rows}, ctx.out)
        return ExitCode.OK
    for item in untagged:
        done = "untagged" if item.removed else "could not untag (in use?)"
        verb = "would untag" if args.dry_run else done
        print(f"{verb} {item.ref}  ({item.target}, built {iso_text(item.created)})", file=ctx.out)
    count = len([u for u in untagged if u.removed or args.dry_run])
    verb = "would be removed" if args.dry_run else "removed"
    print(f"{count} old key tags {verb}; the newest {args.keep} per target kept", file=ctx.out)
    return ExitCode.OK
