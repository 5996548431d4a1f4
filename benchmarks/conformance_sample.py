"""The key against BuildKit on random Dockerfiles: false hits (must be 0), false misses, false refusals.

    .venv/bin/python benchmarks/conformance_sample.py [--repeat SEEDS] [--mutations N] [--first-seed S]

Each seed generates a project: a context (files of several modes, a symlinked directory, a symlink to
a file, a tar archive, a .dockerignore with exceptions) and a Dockerfile of one to three stages drawn
from the instructions and flags of the conformance suite (COPY/ADD with --chown, --chmod, --from,
--link, wildcards, quoted sources and sources through ARG/ENV; RUN with bind mounts, ARG/ENV and proxy
args; ONBUILD of a parent stage; WORKDIR, USER, LABEL, EXPOSE, CMD, ENTRYPOINT, VOLUME, STOPSIGNAL,
HEALTHCHECK, SHELL), with build args. It then applies N random single changes (a file's content, mode,
mtime or name, a new file or directory, a deletion, a symlink's target, a hard link, an ignore rule, a
comment, a value or flag in the Dockerfile, a build arg). Every project is keyed in-process and built
for real with ``docker buildx build --no-cache --load`` (tests/conformance/harness.py); each change is
judged by the two images (files and config) against the two keys.

Runs against the engine DOCKER_HOST names; features the engine rejects (COPY --link and heredocs on
BuildKit 0.8) are probed first and left out. Writes benchmarks/results/conformance_sample.json.
"""

from __future__ import annotations

import argparse
import fnmatch
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common as c

from stagecache.engine.docker import Docker

sys.path.insert(0, str(c.REPO))
from tests.conformance import harness as h

WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta"]
DIRS = ["src", "src/pkg", "src/pkg/sub", "conf", "docs", "real", "real2"]
NAMES = ["a.txt", "b.txt", "c.py", "d.log", "e.cfg", "s1.txt", "s2.txt", "x y.txt", "keep.md"]
# Always there (changes never delete them), so that the sources the Dockerfile names exist.
BASE_FILES = ["a.txt", "b.txt", "s1.txt", "s2.txt", "src/c.py", "src/pkg/d.txt", "real/r1.txt", "conf/e.cfg"]
GLOBS = ["*.txt", "s*", "?.txt", "[ab].txt", "src/*.py", "src/pkg/*", "lnk/*.txt", "real/*", "conf"]
IGNORE = ["*.log", "**/*.cfg", "docs", "!docs/keep.md", "src/pkg/sub", "!src/pkg/sub/a.txt", "# note",
          "conf/*.txt", "x*", "!x y.txt", "real2"]  # fmt: skip
PROXIES = ["HTTP_PROXY", "https_proxy", "NO_PROXY", "ftp_proxy"]


class Generator:
    """Random projects and changes to them, from one seed."""

    def __init__(self, rng: random.Random, features: set[str]) -> None:
        self.rng = rng
        self.features = features

    # --- the project ------------------------------------------------------------------------------------
    def project(self) -> h.Project:
        rng = self.rng
        files: dict[str, h.Node] = {}
        for path in BASE_FILES:
            files[path] = self.file()
        for _ in range(rng.randint(4, 12)):
            files[f"{rng.choice(DIRS)}/{rng.choice(NAMES)}"] = self.file()
        files["lnk"] = h.Link("real")
        files["flink"] = h.Link("a.txt")
        files["pkg.tar"] = h.Tar((("t/one", rng.choice(WORDS)), ("two", rng.choice(WORDS))))
        files["src/empty"] = h.Dir()
        if rng.random() < 0.7:
            files[".dockerignore"] = "\n".join(rng.sample(IGNORE, rng.randint(1, 4))) + "\n"
        stages = self.stages()
        args = {}
        declared = [line.split()[1].split("=")[0] for line in stages if line.startswith("ARG ")]
        for name in declared:
            if rng.random() < 0.4:
                args[name] = self.arg_value(name)
        if rng.random() < 0.2:
            args[rng.choice(PROXIES)] = f"http://{rng.choice(WORDS)}.invalid:3128"
        return h.Project("\n".join(stages) + "\n", files, args=args)

    def arg_value(self, name: str) -> str:
        """A value for a build arg: a file name for the ARGs that name a COPY source (F...)."""
        return self.rng.choice(BASE_FILES if name.startswith("F") else WORDS)

    def file(self) -> h.File:
        rng = self.rng
        content = f"{rng.choice(WORDS)} {rng.randint(0, 99)}\n" * rng.randint(0, 3)
        return h.File(content, rng.choice([0o644, 0o644, 0o755, 0o600, 0o4755]))

    def stages(self) -> list[str]:
        rng = self.rng
        lines: list[str] = []
        names: list[str] = []
        shell: dict[str, bool] = {}
        for i in range(rng.randint(1, 3)):
            name = f"s{i}"
            choices = ["scratch", "@BASE@", "@BASE@", *names]
            base = rng.choice(choices)
            has_shell = base == "@BASE@" or shell.get(base, False)
            lines.append(f"FROM {base} AS {name}")
            for _ in range(rng.randint(3, 8)):
                lines += self.instruction(has_shell, names)
            names.append(name)
            shell[name] = has_shell
        return lines

    def instruction(self, shell: bool, earlier: list[str]) -> list[str]:
        rng = self.rng
        n = rng.randint(0, 999)
        word = rng.choice(WORDS)
        kinds = ["copy"] * 8 + ["add", "arg", "env", "workdir", "user", "label", "expose", "cmd",
                                "entrypoint", "volume", "stopsignal", "healthcheck", "onbuild"]  # fmt: skip
        if shell:
            kinds += ["run"] * 3 + ["shell"]
        kind = rng.choice(kinds)
        if kind == "copy":
            return self.copy(n, earlier)
        if kind == "add":
            return [rng.choice([f"ADD pkg.tar /t{n}/", f"ADD {rng.choice(BASE_FILES)} /add{n}/"])]
        if kind == "arg":
            return [f"ARG V{n}={word}"]
        if kind == "env":
            return [rng.choice([f"ENV E{n}={word}", f'ENV E{n}="{word} {rng.choice(WORDS)}"'])]
        if kind == "workdir":
            return [f"WORKDIR /w{n}"]
        if kind == "user":
            return [f"USER {rng.choice(['1000', '1001:1001', '0'])}"]
        if kind == "label":
            return [f"LABEL l{n}={word}"]
        if kind == "expose":
            return [f"EXPOSE {rng.choice(['80', '8080/udp', '443/tcp'])}"]
        if kind == "cmd":
            return [rng.choice([f'CMD ["run", "{word}"]', f"CMD run {word}"])]
        if kind == "entrypoint":
            return [f'ENTRYPOINT ["{word}"]']
        if kind == "volume":
            return [f"VOLUME /vol{n}"]
        if kind == "stopsignal":
            return [f"STOPSIGNAL {rng.choice(['SIGTERM', 'SIGINT', '9'])}"]
        if kind == "healthcheck":
            return [f'HEALTHCHECK --interval={rng.randint(1, 9)}s CMD ["{word}"]']
        if kind == "onbuild":
            return [rng.choice([f"ONBUILD COPY {rng.choice(BASE_FILES)} /ob{n}", f"ONBUILD LABEL ob={word}"])]
        if kind == "shell":
            return ['SHELL ["/bin/sh", "-c"]']
        return self.run(n, word)

    def copy(self, n: int, earlier: list[str]) -> list[str]:
        rng = self.rng
        flags = []
        if rng.random() < 0.25:
            flags.append(f"--chown={rng.choice(['0:0', '1:2', '1000:1000', '33'])}")
        if rng.random() < 0.25:
            flags.append(f"--chmod={rng.choice(['644', '755', '600', '640'])}")
        if "link" in self.features and rng.random() < 0.15:
            flags.append("--link")
        flag_text = "".join(f"{f} " for f in flags)
        if earlier and rng.random() < 0.2:
            return [f"COPY {flag_text}--from={rng.choice(earlier)} / /from{n}/"]
        roll = rng.random()
        if roll < 0.3:
            src = rng.choice([*BASE_FILES, "flink", "lnk/r1.txt"])
        elif roll < 0.55:
            src = rng.choice(GLOBS)
        elif roll < 0.65:
            src = f'"{rng.choice(GLOBS)}"'
        elif roll < 0.75:
            return [f"ARG F{n}={rng.choice(BASE_FILES)}", f"COPY {flag_text}${{F{n}}} /app{n}/"]
        elif roll < 0.82:
            return [f'ENV D{n}="{rng.choice(GLOBS)}"', f"COPY {flag_text}$D{n} /app{n}/"]
        elif roll < 0.9:
            src = rng.choice(["src", "src/", "real", "lnk", "docs"])
        else:
            src = "."
        return [f"COPY {flag_text}{src} /app{n}/"]

    def run(self, n: int, word: str) -> list[str]:
        """A RUN step; it writes under /tmp, which any USER may."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.3:
            return [f"RUN echo {word} > /tmp/r{n}"]
        if roll < 0.5:
            src = rng.choice(BASE_FILES)
            return [f"RUN --mount=type=bind,source={src},target=/m cat /m > /tmp/m{n}"]
        if roll < 0.65:
            return [f"ARG A{n}={word}", f'RUN echo "$A{n}" > /tmp/a{n}']
        if roll < 0.75:
            return [f'RUN echo "$HTTP_PROXY $https_proxy $NO_PROXY $ftp_proxy" > /tmp/p{n}']
        if roll < 0.85 and "heredoc" in self.features:
            return [f"RUN <<EOF\necho {word} > /tmp/h{n}\nEOF"]
        return [
            rng.choice(
                [
                    f"RUN id > /tmp/id{n}",
                    f"RUN env > /tmp/env{n}",
                    f"RUN ls -R /app* > /tmp/ls{n} 2>&1 || true",
                ]
            )
        ]

    # --- changes ----------------------------------------------------------------------------------------
    def change(self, project: h.Project) -> h.Change:
        rng = self.rng
        files = project.files
        plain = sorted(p for p, node in files.items() if isinstance(node, (str, h.File)))
        linked = {node.of for node in files.values() if isinstance(node, h.HardLink)}
        extra = [p for p in plain if p not in BASE_FILES and p not in linked]
        kind = rng.choice(
            ["content", "content", "mode", "mtime", "rename", "delete", "add", "mkdir", "relink",
             "hardlink", "ignore", "comment", "value", "flag", "build-arg", "continuation"]
        )  # fmt: skip
        read = self.read(project.dockerfile, plain)
        path = rng.choice(read if read and rng.random() < 0.85 else plain)
        node = files[path]
        current = node if isinstance(node, h.File) else h.File(str(node))
        if kind == "content":
            data = current.content.encode() if isinstance(current.content, str) else current.content
            return h.Change(f"content of {path}", files={path: current._replace(content=data + b"x")})
        if kind == "mode":
            return h.Change(f"mode of {path}", files={path: current._replace(mode=current.mode ^ 0o111)})
        if kind == "mtime":
            return h.Change(f"mtime of {path}", files={path: current._replace(mtime=rng.randint(1, 10**9))})
        if kind == "rename" and extra:
            old = rng.choice(extra)
            return h.Change(f"rename {old}", files={old: None, f"{old}.renamed": files[old]})
        if kind == "delete" and extra:
            gone = rng.choice(extra)
            return h.Change(f"delete {gone}", files={gone: None})
        if kind == "mkdir":
            new = f"{rng.choice(DIRS)}/empty{rng.randint(0, 99)}"
            return h.Change(f"new empty directory {new}", files={new: h.Dir()})
        if kind == "relink":
            link, target = rng.choice(
                [("lnk", rng.choice(["real", "real2", "src"])), ("flink", rng.choice(plain))]
            )
            return h.Change(f"symlink {link} -> {target}", files={link: h.Link(target)})
        if kind == "hardlink" and len(plain) > 1:
            a, b = rng.choice(plain), rng.choice(read or plain)
            if a == b:
                return h.Change("comment", dockerfile=f"# {rng.random()}\n{project.dockerfile}")
            if isinstance(files[a], h.HardLink) or any(
                isinstance(n, h.HardLink) and n.of == b for n in files.values()
            ):
                return h.Change("comment", dockerfile=f"# {rng.random()}\n{project.dockerfile}")
            return h.Change(f"{b} becomes a hard link of {a}", files={b: h.HardLink(a)})
        if kind == "ignore":
            text = str(files.get(".dockerignore", ""))
            rule = rng.choice(IGNORE)
            return h.Change(f"ignore rule {rule}", files={".dockerignore": f"{text}{rule}\n"})
        if kind in ("value", "flag", "continuation"):
            changed = self.edit(project.dockerfile, kind)
            if changed is not None:
                return h.Change(f"Dockerfile: {kind}", dockerfile=changed)
        if kind == "build-arg":
            declared = [w.split("=")[0] for line in project.dockerfile.splitlines() if line.startswith("ARG ")
                        for w in line.split()[1:2]]  # fmt: skip
            name = rng.choice([*declared, *PROXIES])
            value = self.arg_value(name) if name in declared else f"http://{rng.choice(WORDS)}.invalid:1"
            return h.Change(f"build arg {name}={value}", args={**project.args, name: value})
        if kind == "comment":
            return h.Change("comment", dockerfile=f"# {rng.random()}\n{project.dockerfile}")
        new = f"{rng.choice(DIRS)}/{rng.choice(NAMES)}"
        return h.Change(f"add {new}", files={new: self.file()})

    @staticmethod
    def read(dockerfile: str, paths: list[str]) -> list[str]:
        """Paths a word of the Dockerfile names, matches or contains (roughly: what it may read)."""
        words = {w.strip('"').rstrip("/") for w in dockerfile.replace("=", " ").split()}
        words |= {w.replace("lnk", "real", 1) for w in words if w.startswith("lnk")}
        out = []
        for path in paths:
            if any(path == w or path.startswith(f"{w}/") or fnmatch.fnmatchcase(path, w) for w in words):
                out.append(path)
        return out

    def edit(self, text: str, kind: str) -> str | None:
        rng = self.rng
        lines = text.split("\n")
        if kind == "value":
            words = [(i, w) for i, line in enumerate(lines) for w in WORDS if w in line]
            if not words:
                return None
            i, w = rng.choice(words)
            lines[i] = lines[i].replace(w, rng.choice([x for x in WORDS if x != w]), 1)
        elif kind == "flag":
            flagged = [i for i, line in enumerate(lines) if "--chmod=" in line or "--chown=" in line]
            if not flagged:
                return None
            i = rng.choice(flagged)
            if "--chmod=" in lines[i]:
                old = lines[i].split("--chmod=")[1].split()[0]
                lines[i] = lines[i].replace(f"--chmod={old}", f"--chmod={rng.choice(['644', '755', '700'])}")
            else:
                old = lines[i].split("--chown=")[1].split()[0]
                lines[i] = lines[i].replace(f"--chown={old}", f"--chown={rng.choice(['5:6', '0:0', '1000'])}")
        else:
            split = [i for i, line in enumerate(lines) if line.startswith(("COPY ", "LABEL ", "EXPOSE "))]
            if not split:
                return None
            i = rng.choice(split)
            head, _, rest = lines[i].partition(" ")
            lines[i] = f"{head} \\\n    {rest}"
        return "\n".join(lines)


class Count(c.Check):
    """A count whose goal is 0 (``Check.verdict`` divides by the goal)."""

    def verdict(self) -> str:
        if self.met:
            return super().verdict()
        return f"MISSED  {self.name}: {self.measured:.0f} > goal {self.goal:.0f}"


def probe(workdir: Path) -> set[str]:
    """The features of this engine's frontend the generator may use."""
    found = set()
    for feature, dockerfile in (
        ("link", "FROM scratch\nCOPY --link Dockerfile /x\n"),
        ("heredoc", "FROM scratch\nCOPY <<EOF /x\nhi\nEOF\n"),
    ):
        path = workdir / f"probe-{feature}"
        path.mkdir()
        (path / "Dockerfile").write_text(dockerfile)
        iid = path / "iid"
        argv = ["docker", "buildx", "build", "--load", "--iidfile", str(iid), str(path)]
        if subprocess.run(argv, capture_output=True, check=False).returncode == 0:
            found.add(feature)
        if iid.exists() and iid.read_text().strip():
            subprocess.run(
                ["docker", "image", "rm", iid.read_text().strip()], capture_output=True, check=False
            )
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30, help="seeds, each a project (default 30)")
    parser.add_argument("--mutations", type=int, default=12, help="changes per seed (default 12)")
    parser.add_argument("--first-seed", type=int, default=1000)
    args = parser.parse_args()
    c.preflight()
    started = time.monotonic()
    engine = h.engine_description()
    with tempfile.TemporaryDirectory(prefix="stagecache-conformance-sample-") as tmp:
        features = probe(Path(tmp))
        cases: list[h.Case] = []
        for seed in range(args.first_seed, args.first_seed + args.repeat):
            gen = Generator(random.Random(seed), features)
            project = gen.project()
            for step in range(args.mutations):
                change = gen.change(project)
                case = h.Case(f"seed {seed} step {step}", "random", project, change, image=None)
                cases.append(case)
                project = case.after
        print(
            f"{engine}; features: {', '.join(sorted(features)) or 'none'}; {len(cases)} changes", flush=True
        )
        with h.Run(Docker.local(), Path(tmp)) as run:
            results = run.execute(cases, progress=lambda line: print(line, flush=True))
        builds = run.builds
    seconds = time.monotonic() - started
    counts = h.tally(results)
    false_hits = [r for r in results if r.verdict == h.FALSE_HIT]
    false_misses = [r for r in results if r.verdict == h.FALSE_MISS]
    refusals = [r for r in results if r.verdict == h.FALSE_REFUSAL]
    rejected = [r for r in results if r.verdict == h.REJECTED]
    crashed = [r for r in results if r.verdict == h.CRASHED]
    unchanged = sum(1 for r in results if r.image_changed is False)
    for r in false_hits:
        print(f"  FALSE HIT  {r.case.id}: {r.case.change.what}: {r.detail}")
        print("    Dockerfile before:\n      " + r.case.project.dockerfile.replace("\n", "\n      "))
        print(f"    build args: {dict(r.case.project.args)} -> {dict(r.case.after.args)}")
    for r in refusals + crashed:
        print(f"  {r.verdict}  {r.case.id}: {r.case.change.what}: {r.detail}")
    for r in false_misses:
        print(f"  false miss {r.case.id}: {r.case.change.what}")
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
    print(f"{len(results)} changes, {builds} builds in {seconds:.0f} s on {engine}: {verdicts}")
    print(
        f"false hits {len(false_hits)}; false misses {len(false_misses)} of {unchanged} changes that left "
        f"the image alone; false refusals {len(refusals)}; rejected by the engine {len(rejected)} "
        f"(refused by stagecache too: {sum(r.key_outcome().startswith('refused') for r in rejected)})"
    )
    checks = [Count("false hits (image changed, key did not)", float(len(false_hits)), 0.0, "x")]
    parsed = argparse.Namespace(repeat=args.repeat)
    data = c.result(
        "conformance_sample",
        parsed,
        c.machine(),
        checks,
        engine=engine,
        features=sorted(features),
        seeds=[args.first_seed, args.first_seed + args.repeat - 1],
        mutations=args.mutations,
        changes=len(results),
        builds=builds,
        seconds=round(seconds, 1),
        verdicts=counts,
        false_hits=[r.as_json() | {"dockerfile": r.case.project.dockerfile} for r in false_hits],
        false_refusals=[r.as_json() for r in refusals],
        false_misses=[r.as_json() for r in false_misses],
        rejected=[r.as_json() for r in rejected],
        crashed=[r.as_json() for r in crashed],
    )
    c.report("conformance_sample", checks, data)
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
