"""``stagecache check-prod``."""

from __future__ import annotations

import argparse

from ... import checkprod
from ...errors import ExitCode
from ...refs import short_key_ref
from ..context import Context
from ..render import dump_json, mb, table


def check_prod(args: argparse.Namespace, ctx: Context) -> int:
    app = ctx.app()
    result = checkprod.check_prod(
        app.resolver(use_store=not args.no_store), app.engine, app.settings, args.target
    )
    if args.json:
        dump_json(as_json(result), ctx.out)
    else:
        show(result, ctx)
    return ExitCode.OK if result.report.clean else ExitCode.FAILED


def as_json(result: checkprod.ProdCheck) -> dict[str, object]:
    report = result.report
    return {
        "target": result.target,
        "image": report.image,
        "clean": report.clean,
        "dev_packages": {"source": report.dev_packages.source, "names": sorted(report.dev_packages.names)},
        "installed_count": report.installed_count,
        "found": [{"name": p.name, "version": p.version, "location": p.location} for p in report.found],
        "images": [
            {"target": name, "image": image, "size": result.sizes.get(image)}
            for name, image in result.images.items()
        ],
    }


def show(result: checkprod.ProdCheck, ctx: Context) -> None:
    report, out = result.report, ctx.out
    print(
        f"dev-only packages: {len(report.dev_packages.names)} (from {report.dev_packages.source})", file=out
    )
    rows = [
        [name, short_key_ref(image), mb(result.sizes.get(image, 0))] for name, image in result.images.items()
    ]
    table([["TARGET", "IMAGE", "SIZE"], *rows], out)
    if report.clean:
        print(f"{result.target}: clean: none of the {report.installed_count} installed distributions "
              "is dev-only", file=out)  # fmt: skip
        return
    print(f"{result.target}: {len(report.found)} dev-only package(s) in the prod image:", file=out)
    for pkg in report.found:
        print(f"  {pkg.name} {pkg.version}  ({pkg.location})", file=out)
