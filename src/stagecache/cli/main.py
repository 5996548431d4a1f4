"""The command line: parse arguments, call one library function per command, print, return an exit code.

Errors from the library become a one-line message here, in one place (:func:`main`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .. import __version__, trace
from ..build import Resolver, Result, target_id
from ..engine.docker import Docker
from ..errors import ConfigError, ExitCode, StagecacheError
from ..key import digest as keys
from ..project.config import Settings, Target, read_tool_table
from ..project.settings import Options, cache_dir, load, open_store, store_location
from ..project.vcs import CommitProbe
from ..store.directory import DirectoryStore, iso

if TYPE_CHECKING:
    from ..testrun import TestRunner


# --- terminal output ------------------------------------------------------------------------------------
class TerminalReporter:
    """Progress on stderr: a line per step, a self-updating line for byte transfers on a terminal."""

    def __init__(self, stream: TextIO, *, quiet: bool = False) -> None:
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self.color = self.tty and not os.environ.get("NO_COLOR")
        self._last_transfer = 0.0

    def _paint(self, text: str, code: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def step(self, target: str, message: str) -> None:
        if not self.quiet:
            print(f"{self._paint(target, '1')}: {message}", file=self.stream, flush=True)

    def warn(self, message: str) -> None:
        print(f"{self._paint('warning', '33')}: {message}", file=self.stream, flush=True)

    def transfer(self, label: str, done: int, total: int | None) -> None:
        if self.quiet or not self.tty:
            return
        now = time.monotonic()
        finished = total is not None and done >= total
        if not finished and now - self._last_transfer < 0.1:
            return
        self._last_transfer = now
        of = f" of {total / 1e6:.0f} MB" if total else ""
        end = "\n" if finished else ""
        print(f"\r  {label}: {done / 1e6:.0f} MB{of}\033[K", end=end, file=self.stream, flush=True)


def _table(rows: list[list[str]], out: TextIO) -> None:
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=out)


def _short(key: str) -> str:
    return key[:19]


# --- commands -------------------------------------------------------------------------------------------
def _settings(args: argparse.Namespace, docker: Docker) -> Settings:
    opts = Options(
        project_dir=Path(args.project_dir),
        compose_files=args.compose_file or (),
        dockerfile=args.file,
        context=args.context,
        build_args=_build_args(args.build_arg or []),
        store=args.store,
        repository=getattr(args, "repository", None),
    )
    return load(opts, docker)


def _build_args(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not name:
            raise ConfigError(
                f"--build-arg {item!r}: write NAME=VALUE (or NAME to take it from the environment)"
            )
        if not eq:
            if name not in os.environ:
                continue  # docker build skips a bare NAME that is not set
            value = os.environ[name]
        out[name] = value
    return out


def _resolver(settings: Settings, docker: Docker, reporter: TerminalReporter, use_store: bool) -> Resolver:
    store = open_store(settings) if use_store else None
    if store is not None:
        store.ensure()
    return Resolver(
        docker=docker,
        store=store,
        reporter=reporter,
        secret_patterns=settings.secret_patterns,
        digest_cache_dir=cache_dir() / "digests",
        watch_dir=cache_dir() / "watch",
        start_watchers=settings.tool.get("watch") is True,
    )


def cmd_key(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    docker.engine()
    settings = _settings(args, docker)
    (target,) = settings.select([args.target] if args.target else settings.defaults[:1] or _first(settings))
    resolver = _resolver(settings, docker, reporter, use_store=False)
    key, found = resolver.key(target)
    if args.json:
        json.dump(
            {"target": target.name, "key": key, "manifest": found.public}, out, indent=2, sort_keys=True
        )
        print(file=out)
    elif args.explain:
        _explain(target, key, found.public, out)
    elif args.why:
        last = open_store(settings).last_build(target_id(target))
        if last is None:
            print(f"{target.name}: no recorded build to compare with; key {key}", file=out)
            return ExitCode.OK
        if last.get("key") == key:
            print(f"{target.name}: unchanged since the last build ({_short(key)})", file=out)
            return ExitCode.OK
        changes = keys.diff(last.get("manifest", {}), found.public)
        print(f"{target.name}: {_short(str(last.get('key')))} -> {_short(key)}; what changed:", file=out)
        for line in changes.lines() or ["(a change the manifest cannot name, e.g. a secret build arg)"]:
            print(f"  {line}", file=out)
    else:
        print(key, file=out)
    return ExitCode.OK


def _first(settings: Settings) -> list[str]:
    if len(settings.targets) == 1:
        return list(settings.targets)
    raise ConfigError(f"name a target; targets: {', '.join(sorted(settings.targets))}")


def _explain(target: Target, key: str, manifest: dict[str, Any], out: TextIO) -> None:
    print(f"target   {target.name} (stage {manifest['target']}, {manifest['platform']})", file=out)
    print(f"key      {key}", file=out)
    print(
        f"stages   {' -> '.join(s['name'] + ' (from ' + s['from'] + ')' for s in manifest['stages'])}",
        file=out,
    )
    for ref, ident in sorted(manifest["images"].items()):
        print(f"image    {ref} = {ident}", file=out)
    for name, value in sorted(manifest["args"].items()):
        print(f"arg      {name}={value}", file=out)
    files = manifest["files"]
    print(f"files    {len(files)} entries from the context", file=out)
    for path, kind, mode, detail in files:
        shown = detail[:12] if kind == "file" else (f"-> {detail}" if kind == "symlink" else "")
        print(f"  {kind:7} {mode:>6}  {shown:14} {path}", file=out)
    for reason in manifest.get("uncacheable", []):
        print(f"uncacheable  {reason}", file=out)


def cmd_build(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    docker.engine()
    settings = _settings(args, docker)
    targets = settings.select(args.targets)
    resolver = _resolver(settings, docker, reporter, use_store=not args.no_store)
    # git runs on another core while the keys are computed; its answer is read when the tags are applied
    commit = None if args.no_commit_tag else CommitProbe(settings.root)
    try:
        results = _build_targets(args, resolver, targets, commit, reporter, out)
    finally:
        if commit is not None:
            commit.close()
    if resolver.store is not None and settings.store_max_size is not None:
        for entry in resolver.store.prune(max_size=settings.store_max_size):
            reporter.warn(
                f"store over {settings.store_max_size} bytes: removed {_short(entry.key)} ({entry.target})"
            )
    if args.json:
        json.dump([r.as_json() for r in results], out, indent=2)
        print(file=out)
    return ExitCode.OK


def _build_targets(
    args: argparse.Namespace,
    resolver: Resolver,
    targets: list[Target],
    commit: CommitProbe | None,
    reporter: TerminalReporter,
    out: TextIO,
) -> list[Result]:
    results: list[Result] = []
    for target in targets:

        def tags(target: Target = target) -> list[str]:
            wanted = list(args.tag or [])
            if commit is not None and (sha := commit.result()):
                wanted.append(f"{target.repository}:{sha}")
            if target.image:
                wanted.append(target.image)
            return wanted

        result = resolver.resolve(target, tags=tags, rebuild=args.rebuild, save=not args.no_store,
                                  quiet_build=args.quiet)  # fmt: skip
        results.append(result)
        if not args.json:
            reporter.step(target.name, "done")
            print(
                f"{result.target}  {result.outcome:6}  {_short(result.key)}  {result.seconds:6.2f}s  "
                + " ".join(result.tags),
                file=out,
                flush=True,
            )
    return results


def cmd_store(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    root = Path(args.project_dir).resolve()
    store = DirectoryStore(store_location(root, args.store, read_tool_table(root)))
    store.ensure()
    if args.store_command == "ls":
        entries = store.entries()
        if args.json:
            json.dump([e._asdict() for e in entries], out, indent=2)
            print(file=out)
            return ExitCode.OK
        rows = [["KEY", "TARGET", "REPOSITORY", "SIZE", "IMAGE SIZE", "CREATED", "LAST USED"]]
        for e in entries:
            rows.append([_short(e.key), e.target, e.repository, _mb(e.archive_bytes), _mb(e.image_bytes),
                         iso(e.created), iso(e.last_used)])  # fmt: skip
        _table(rows, out)
        total = sum(e.archive_bytes for e in entries)
        print(f"{len(entries)} entries, {_mb(total)} in {store.root}", file=out)
    elif args.store_command == "prune":
        if args.max_size is None and args.keep is None and args.older_than is None:
            raise ConfigError("store prune: give --max-size, --keep or --older-than")
        from ..project.config import parse_size

        removed = store.prune(
            max_size=parse_size(args.max_size, "--max-size") if args.max_size is not None else None,
            keep=args.keep,
            older_than=parse_duration(args.older_than) if args.older_than is not None else None,
            dry_run=args.dry_run,
        )
        verb = "would remove" if args.dry_run else "removed"
        for e in removed:
            print(f"{verb} {_short(e.key)}  {e.target}  {_mb(e.archive_bytes)}", file=out)
        print(f"{verb} {len(removed)} entries, {_mb(sum(e.archive_bytes for e in removed))}", file=out)
    elif args.store_command == "verify":
        problems = store.verify()
        for entry, problem in problems:
            print(f"{_short(entry.key)}  {entry.target}: {problem}; removed", file=out)
        print(f"{len(store.entries())} entries ok, {len(problems)} damaged and removed", file=out)
        return ExitCode.FAILED if problems else ExitCode.OK
    return ExitCode.OK


def cmd_watch(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    from ..speed import watch

    watch_dir = cache_dir() / "watch"
    if args.watch_command == "status" or (args.watch_command == "stop" and args.all):
        running = watch.running(watch_dir)
        if args.watch_command == "stop":
            for path, status in running:
                watch.stop(path)
                print(f"stopped the watcher of {status.get('root')}", file=out)
            print(f"{len(running)} watcher(s) stopped", file=out)
            return ExitCode.OK
        if args.json:
            json.dump([status for _, status in running], out, indent=2)
            print(file=out)
            return ExitCode.OK
        rows = [["CONTEXT", "PID", "SINCE", "DIRECTORIES", "CHANGES SEEN"]]
        for _, status in running:
            since = iso(float(status.get("started", 0)))
            rows.append([str(status.get("root")), str(status.get("pid")), since,
                         str(status.get("directories")), str(status.get("changes"))])  # fmt: skip
        _table(rows, out)
        print(f"{len(running)} watcher(s) running; sockets in {watch_dir}", file=out)
        return ExitCode.OK
    settings = _settings(args, docker)
    contexts = sorted({t.spec.context.resolve() for t in settings.select(args.targets)})
    if args.watch_command == "start" and not watch.enabled():
        raise ConfigError("STAGECACHE_WATCH turns watchers off: unset it to start one")
    for context in contexts:
        socket = watch.socket_path(watch_dir, context)
        if socket is None:
            raise ConfigError(
                f"{watch_dir}: too long a path for a Unix socket: set STAGECACHE_CACHE_DIR to a shorter one"
            )
        if args.watch_command == "stop":
            done = watch.stop(socket)
            print(f"{context}: {'watcher stopped' if done else 'no watcher running'}", file=out)
        elif watch.ask(socket, "status") is not None:
            print(f"{context}: already watched", file=out)
        elif watch.start(context, socket):
            print(f"{context}: watching", file=out)
        else:
            reason = watch.failure(socket) or "it said nothing"
            raise ConfigError(f"{context}: the watcher did not start: {reason}")
    return ExitCode.OK


def cmd_images(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    from ..store.daemon import prune_key_tags

    docker.engine()
    if args.keep < 1:
        raise ConfigError("images prune --keep: keep at least 1 key per target")
    untagged = prune_key_tags(docker, keep=args.keep, dry_run=args.dry_run, repository=args.repository)
    for item in untagged:
        verb = (
            "would untag" if args.dry_run else ("untagged" if item.removed else "could not untag (in use?)")
        )
        print(f"{verb} {item.ref}  ({item.target}, built {item.created[:19]})", file=out)
    count = len([u for u in untagged if u.removed or args.dry_run])
    verb = "would be removed" if args.dry_run else "removed"
    print(f"{count} old key tags {verb}; the newest {args.keep} per target kept", file=out)
    return ExitCode.OK


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def parse_duration(text: str) -> float:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", text.lower())
    if not match:
        raise ConfigError(f"--older-than {text!r}: write e.g. 30m, 12h, 7d or 2w")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[match.group(2)]
    return float(match.group(1)) * unit


def _pick(settings: Settings, given: str | None, key: str, stage: str, what: str) -> Target:
    """The target a command works on: as named, else as configured, else the one built for ``stage``."""
    name = given or settings.tool.get(key)
    if name:
        (target,) = settings.select([str(name)])
        return target
    matches = [t for t in settings.targets.values() if (t.spec.stage or "").lower() == stage]
    if len(matches) == 1:
        return matches[0]
    raise ConfigError(
        f"name the {what} (or set [tool.stagecache] {key}); targets: {', '.join(sorted(settings.targets))}"
    )


def cmd_test(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    from ..testrun import HostNetwork, TestRunner

    docker.engine()
    settings = _settings(args, docker)
    resolver = _resolver(settings, docker, reporter, use_store=not args.no_store)
    runner = TestRunner(docker=docker, resolver=resolver, reporter=reporter)
    results = Path(args.results).resolve() if args.results else None
    env = _env(args.env or [])
    tty = sys.stdin.isatty() and sys.stdout.isatty()
    target = _pick(settings, args.service, "test-service", "dev", "test service")
    compose_mode = bool(settings.compose_files) and not (args.network_host or args.add_host)
    passed_key = (
        _test_fingerprint(args, settings, target, runner, env, compose_mode) if args.skip_passed else None
    )
    earlier = resolver.store.passed(passed_key) if passed_key and resolver.store else None
    if earlier is not None:
        print(f"{target.name}: skipped: passed on {earlier.get('when')} with the same images, services, "
              "arguments and environment (--skip-passed)", file=out)  # fmt: skip
        return ExitCode.OK
    if compose_mode:
        outcome = runner.run_compose(settings, target.name, extra_args=args.extra, results=results,
                                     wait_timeout=args.wait_timeout, tty=tty,
                                     env={k: v for k, v in env.items() if v is not None})  # fmt: skip
    else:
        network = HostNetwork(host_network=args.network_host, add_hosts=args.add_host or ())
        outcome = runner.run_plain(target, extra_args=args.extra, results=results, network=network, env=env,
                                   tty=tty)  # fmt: skip
    if passed_key is not None and outcome.exit_code == 0 and resolver.store is not None:
        from ..store.directory import iso

        resolver.store.record_pass(passed_key, {"service": target.name, "when": iso(time.time())})
    verdict = "passed" if outcome.exit_code == 0 else f"failed (exit {outcome.exit_code})"
    junit = f", report {outcome.junit}" if outcome.junit else ""
    print(f"{outcome.service}: tests {verdict} in {outcome.seconds:.1f}s{junit}", file=out)
    return outcome.exit_code


def _test_fingerprint(
    args: argparse.Namespace,
    settings: Settings,
    target: Target,
    runner: TestRunner,
    env: dict[str, str | None],
    compose_mode: bool,
) -> str:
    """What an identical rerun would have to match: the images' keys, services, arguments, environment."""
    if compose_mode:
        return runner.compose_fingerprint(settings, target.name, args.extra, env)
    options = {"network-host": args.network_host, "add-host": args.add_host or []}
    return runner.plain_fingerprint(target, options, args.extra, env)


def _env(items: list[str]) -> dict[str, str | None]:
    """``-e NAME=VALUE`` sets a value; ``-e NAME`` passes the caller's value through, as docker does."""
    out: dict[str, str | None] = {}
    for item in items:
        name, eq, value = item.partition("=")
        out[name] = value if eq else os.environ.get(name)
    return out


def cmd_run(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    from ..testrun import TestRunner

    docker.engine()
    settings = _settings(args, docker)
    if not settings.compose_files:
        raise ConfigError("stagecache run needs a compose file (docker-compose.yml or compose.yaml)")
    target = _pick(settings, args.service, "run-service", "prod", "service to run")
    resolver = _resolver(settings, docker, reporter, use_store=not args.no_store)
    return TestRunner(docker=docker, resolver=resolver, reporter=reporter).serve(settings, target.name)


def cmd_check_prod(args: argparse.Namespace, docker: Docker, reporter: TerminalReporter, out: TextIO) -> int:
    from .. import checkprod

    docker.engine()
    settings = _settings(args, docker)
    prod = _pick(settings, args.target, "prod-target", "prod", "prod target")
    resolver = _resolver(settings, docker, reporter, use_store=not args.no_store)
    prod_result = resolver.resolve(prod, tags=[prod.image] if prod.image else [])
    root = prod.spec.context if (prod.spec.context / "pyproject.toml").exists() else settings.root
    dev = checkprod.dev_only_packages(root, [str(n) for n in settings.tool.get("dev-packages", [])])
    report = checkprod.check(docker, prod_result.image, dev)
    dev_targets = [t for t in settings.targets.values() if (t.spec.stage or "").lower() == "dev"]
    images = {prod.name: prod_result.image}
    for target in dev_targets[:1]:
        images[target.name] = resolver.resolve(target, tags=[target.image] if target.image else []).image
    sizes = checkprod.sizes(docker, list(images.values()))
    print(f"dev-only packages: {len(dev.names)} (from {dev.source})", file=out)
    rows = [
        [name, image[: image.index(":sc-") + 16], _mb(sizes.get(image, 0))] for name, image in images.items()
    ]
    _table([["TARGET", "IMAGE", "SIZE"], *rows], out)
    if report.clean:
        print(
            f"{prod.name}: clean: none of the {report.installed_count} installed distributions is dev-only",
            file=out,
        )
        return ExitCode.OK
    print(f"{prod.name}: {len(report.found)} dev-only package(s) in the prod image:", file=out)
    for pkg in report.found:
        print(f"  {pkg.name} {pkg.version}  ({pkg.location})", file=out)
    return ExitCode.FAILED


# --- parser ---------------------------------------------------------------------------------------------
COMMANDS = ("key", "build", "test", "run", "check-prod", "images", "store", "watch")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser; with ``command``, only that command's sub-parser is built.

    Each argparse parser costs a millisecond or two to build (translations are looked up, a help
    formatter is made per option): all of them together are a fifth of a warm hit. The full parser
    is built for ``--help``, for no command, and for a command that is not one of :data:`COMMANDS`.
    """

    def wanted(name: str) -> bool:
        return command is None or command == name

    parser = argparse.ArgumentParser(
        prog="stagecache",
        description="Content-addressed builds of Dockerfile targets: a hit costs a retag, a miss builds "
        "with BuildKit and keeps the image in a store.",
    )
    parser.add_argument("--version", action="version", version=f"stagecache {__version__}")
    common = _common_options()
    images = argparse.ArgumentParser(add_help=False)
    images.add_argument("--repository", help="image repository for key tags (default: from compose)")
    images.add_argument("--no-store", action="store_true", help="neither read nor write the store")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    if wanted("key"):
        p = sub.add_parser("key", parents=[common, images], help="print the key of a target, or explain it")
        p.add_argument("target", nargs="?", help="a compose service with build:, or a stage with -f")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--json", action="store_true", help="the whole input manifest as JSON")
        mode.add_argument("--explain", action="store_true", help="the inputs, for a person")
        mode.add_argument("--why", action="store_true", help="what changed since the target's last build")
        p.set_defaults(func=cmd_key)

    if wanted("build"):
        p = sub.add_parser(
            "build", parents=[common, images], help="get each target's image: retag, load or build"
        )
        p.add_argument("targets", nargs="*", metavar="TARGET", help="default: every configured target")
        p.add_argument("-t", "--tag", action="append", metavar="NAME:TAG", help="also tag the image")
        p.add_argument("--rebuild", action="store_true", help="build even on a hit")
        p.add_argument("--no-commit-tag", action="store_true", help="do not tag with the commit SHA")
        p.add_argument("--json", action="store_true", help="print results as JSON")
        p.set_defaults(func=cmd_build)

    if wanted("test"):
        p = sub.add_parser(
            "test", parents=[common, images], help="run the tests inside the dev image, with services"
        )
        p.add_argument(
            "service", nargs="?", help="the test service (default: [tool.stagecache] test-service)"
        )
        p.add_argument("--results", metavar="DIR", help="write JUnit XML here")
        p.add_argument(
            "--wait-timeout", type=int, default=120, metavar="S", help="seconds to wait for services"
        )
        p.add_argument("-e", "--env", action="append", metavar="NAME[=VALUE]", help="set or pass a variable")
        p.add_argument("--network-host", action="store_true", help="no compose: share the host's network")
        p.add_argument("--add-host", action="append", metavar="NAME", help="no compose: NAME is the host")
        p.add_argument("--skip-passed", action="store_true", help="skip a rerun identical to one that passed")
        p.set_defaults(func=cmd_test, extra=[])

    if wanted("run"):
        p = sub.add_parser("run", parents=[common, images], help="run the prod service and its dependencies")
        p.add_argument("service", nargs="?", help="default: the service built for the prod stage")
        p.set_defaults(func=cmd_run)

    if wanted("check-prod"):
        p = sub.add_parser(
            "check-prod", parents=[common, images], help="fail if the prod image holds a dev-only package"
        )
        p.add_argument("target", nargs="?", help="default: the target built for the prod stage")
        p.set_defaults(func=cmd_check_prod)

    if wanted("images"):
        _images_parser(sub)
    if wanted("store"):
        _store_parser(sub, common)
    if wanted("watch"):
        _watch_parser(sub, common)
    return parser


def _common_options(defaults: bool = True) -> argparse.ArgumentParser:
    """The options every project command takes. ``defaults=False``: an absent option sets nothing, so
    that on a nested action it does not undo the same option given before the action."""
    common = argparse.ArgumentParser(add_help=False)
    unset: dict[str, Any] = {} if defaults else {"default": argparse.SUPPRESS}
    common.add_argument(
        "-C",
        "--project-dir",
        **(unset or {"default": "."}),
        help="the project (compose file, pyproject.toml)",
    )
    common.add_argument(
        "--compose-file", action="append", metavar="FILE", **unset, help="compose file(s) to read"
    )
    common.add_argument(
        "-f", "--file", metavar="DOCKERFILE", **unset, help="a Dockerfile, without a compose file"
    )
    common.add_argument(
        "--context", metavar="DIR", **unset, help="the build context with -f (default: the project)"
    )
    common.add_argument(
        "--build-arg", action="append", metavar="NAME=VALUE", **unset, help="override a build arg"
    )
    common.add_argument("--store", metavar="DIR", **unset, help="the store directory (env STAGECACHE_STORE)")
    common.add_argument("-q", "--quiet", action="store_true", **unset, help="only results and errors")
    common.add_argument("-v", "--verbose", action="store_true", **unset, help="log every docker command")
    return common


def _images_parser(sub: Any) -> None:
    p = sub.add_parser("images", help="untag old key images in the daemon")
    images_sub = p.add_subparsers(dest="images_command", required=True, metavar="ACTION")
    prune_images = images_sub.add_parser(
        "prune", help="keep the newest key tags of each target, untag the rest"
    )
    prune_images.add_argument("--keep", type=int, default=3, metavar="N", help="key tags kept per target (3)")
    prune_images.add_argument("--dry-run", action="store_true", help="say what would go")
    prune_images.add_argument("--repository", help="only this image repository's key tags")
    prune_images.add_argument("-q", "--quiet", action="store_true", help="only results and errors")
    prune_images.add_argument("-v", "--verbose", action="store_true", help="log every docker command")
    p.set_defaults(func=cmd_images)


def _store_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    # The common options go before the action and after it: `stagecache store --store DIR ls` and
    # `stagecache store ls --store DIR` both work. After it they default to nothing, not to None.
    p = sub.add_parser("store", parents=[common], help="list, prune or verify the store")
    common = _common_options(defaults=False)
    store_sub = p.add_subparsers(dest="store_command", required=True, metavar="ACTION")
    ls = store_sub.add_parser("ls", parents=[common], help="list entries, most recently used first")
    ls.add_argument("--json", action="store_true", help="print entries as JSON")
    prune = store_sub.add_parser("prune", parents=[common], help="remove least recently used entries")
    prune.add_argument("--max-size", metavar="SIZE", help="keep the store under SIZE (e.g. 5GB)")
    prune.add_argument("--keep", type=int, metavar="N", help="keep the N most recently used")
    prune.add_argument("--older-than", metavar="AGE", help="remove entries unused for AGE (e.g. 7d)")
    prune.add_argument("--dry-run", action="store_true", help="say what would go")
    store_sub.add_parser("verify", parents=[common], help="check every archive against its digest")
    p.set_defaults(func=cmd_store)


def _watch_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "watch", parents=[common], help="keep a watcher on each context: a repeat key skips the walk"
    )
    common = _common_options(defaults=False)
    watch_sub = p.add_subparsers(dest="watch_command", required=True, metavar="ACTION")
    start = watch_sub.add_parser("start", parents=[common], help="start a watcher for each target's context")
    start.add_argument("targets", nargs="*", metavar="TARGET", help="default: every configured target")
    stop = watch_sub.add_parser("stop", parents=[common], help="stop the watchers of these targets' contexts")
    stop.add_argument("targets", nargs="*", metavar="TARGET", help="default: every configured target")
    stop.add_argument("--all", action="store_true", help="stop every watcher of this user")
    status = watch_sub.add_parser("status", parents=[common], help="list the running watchers")
    status.add_argument("--json", action="store_true", help="print them as JSON")
    p.set_defaults(func=cmd_watch)


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    # A key allocates an object or three per context file and frees almost none before it is done: the
    # cyclic collector's default pace (every 700 allocations) costs a tenth of a 20,000-file key while
    # finding nothing. Collect less often, as mypy does.
    gc.set_threshold(100_000, 20, 20)
    out = out or sys.stdout
    words = list(sys.argv[1:] if argv is None else argv)
    # The top level takes no option with a value, so the first word that is not an option is the command.
    command = next((word for word in words if not word.startswith("-")), None)
    help_asked = "-h" in words or "--help" in words
    parser = build_parser(command if command in COMMANDS and not help_asked else None)
    extra: list[str] = []
    if "--" in words:  # `stagecache test -- -k slow`: what follows goes to the test command
        cut = words.index("--")
        words, extra = words[:cut], words[cut + 1 :]
    args = parser.parse_args(words)
    if extra and not hasattr(args, "extra"):
        parser.error(f"{args.command} takes no arguments after --")
    if hasattr(args, "extra"):
        args.extra = extra
    trace.enabled = args.verbose
    reporter = TerminalReporter(sys.stderr, quiet=args.quiet)
    try:
        return int(args.func(args, Docker.local(), reporter, out))
    except StagecacheError as exc:
        print(f"stagecache: error: {exc}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("stagecache: interrupted", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except OSError as exc:  # a file or directory the environment does not let us use
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"stagecache: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return int(ExitCode.USAGE)
