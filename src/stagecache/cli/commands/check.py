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
    opts = ctx.options()
    result = checkprod.check_prod(
        app.resolver(use_store=not args.no_store),
        app.engine,
        app.settings,
        args.target,
        repository=opts.repository,
        build_args=opts.build_args,
    )
    if args.json:
        dump_json(as_json(result), ctx.out)
    else:
        show(result, ctx)
    return ExitCode.OK if result.report.clean else ExitCode.FAILED


def as_json(result: checkprod.ProdCheck) -> dict[str, object]:
    report, choice = result.report, result.choice
    spec = choice.target.spec
    return {
        "target": result.target,
        "image": report.image,
        "chosen": {
            "target": result.target,
            "dockerfile": str(spec.dockerfile),
            "stage": spec.stage,
            "reason": choice.reason,
            "configured": choice.configured,
            "stored": result.stored,
        },
        "clean": report.clean,
        "dev_packages": {
            "source": report.dev_packages.source,
            "files": report.dev_packages.files,
            "names": sorted(report.dev_packages.names),
        },
        "installed_count": report.installed_count,
        "found": [f.as_json() for f in report.found],
        "not_counted": [f.as_json() for f in report.explained],
        "base_image": report.base_image,
        "images": [
            {"target": name, "image": image, "size": result.sizes.get(image)}
            for name, image in result.images.items()
        ],
    }


def show(result: checkprod.ProdCheck, ctx: Context) -> None:
    report, out = result.report, ctx.out
    print(f"prod image: {result.choice.reason}", file=out)
    print(
        f"dev-only packages: {len(report.dev_packages.names)} (from {report.dev_packages.source})", file=out
    )
    rows = [
        [name, short_key_ref(image), mb(result.sizes.get(image, 0))] for name, image in result.images.items()
    ]
    table([["TARGET", "IMAGE", "SIZE"], *rows], out)
    if report.explained:
        print(f"not counted: {len(report.explained)} package(s) the project has only for dev are in the "
              "prod image for something else:", file=out)  # fmt: skip
        for finding in report.explained:
            pkg = finding.package
            print(f"  {pkg.name} {pkg.version}  ({pkg.location}): {finding.why}", file=out)
    if report.clean:
        print(f"{result.target}: clean: none of the {report.installed_count} installed distributions "
              "is a dev-only package of the project", file=out)  # fmt: skip
        return
    print(f"{result.target}: {len(report.found)} dev-only package(s) in the prod image:", file=out)
    for finding in report.found:
        pkg = finding.package
        print(f"  {pkg.name} {pkg.version}  ({pkg.location}): {finding.why}", file=out)
