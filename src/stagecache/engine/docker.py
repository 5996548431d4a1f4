"""The one module that talks to Docker.

Every call to the ``docker`` CLI (engine, ``buildx`` and ``compose``) goes through :func:`run`, the
single choke point that logs the command and turns failures into :class:`CommandError`. A
:class:`Docker` takes its runner as an argument, so unit tests can check the argv it builds without an
engine; integration tests use the real one.
"""

from __future__ import annotations

import contextlib
import json
import os
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any, NamedTuple, Protocol

from .. import trace
from ..errors import CommandError, ConfigError, EngineError
from . import unixhttp

LABEL_PREFIX = "org.stagecache"


class Completed(NamedTuple):
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


class Runner(Protocol):
    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        stdin: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Completed: ...


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    capture: bool = True,
    stdin: IO[bytes] | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Completed:
    """Run a command. With ``capture=False`` its output goes to the user's terminal (build progress)."""
    trace.debug("$ " + " ".join(argv))
    import subprocess  # imported here: a cache hit runs no docker CLI process

    full_env = {**os.environ, **env} if env else None
    try:
        proc = subprocess.run(
            list(argv),
            stdin=stdin,
            stdout=subprocess.PIPE if capture else None,
            stderr=subprocess.PIPE if capture else None,
            env=full_env,
            cwd=cwd,
            check=False,
        )
    except FileNotFoundError as exc:
        raise EngineError(f"{argv[0]!r} is not installed or not on PATH: run scripts/ensure-engine") from exc
    out = proc.stdout.decode(errors="replace") if capture else ""
    err = proc.stderr.decode(errors="replace") if capture else ""
    if check and proc.returncode != 0:
        raise CommandError(argv, proc.returncode, err)
    return Completed(list(argv), proc.returncode, out, err)


def argv(*base: str, **options: str | bool | int | Iterable[str] | None) -> list[str]:
    """Build an argv: ``argv("build", target="dev", no_cache=True)``.

    gives ``["build", "--target", "dev", "--no-cache"]``.

    ``None`` and ``False`` are skipped, ``True`` is a bare flag, an iterable repeats the option.
    """
    out = list(base)
    for name, value in options.items():
        flag = "--" + name.rstrip("_").replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            out.append(flag)
        elif isinstance(value, (str, int)):
            out += [flag, str(value)]
        else:
            for item in value:
                out += [flag, item]
    return out


class EngineAPI(NamedTuple):
    """The Engine's HTTP API on its local Unix socket, for the few calls a cache hit makes.

    Each docker CLI process costs 15-25 ms to start; a request on the socket costs about 1 ms. A hit
    asks the engine three or four questions, so this is most of the difference between a hit that
    costs a retag and one that costs a tenth of a second. Everything else goes through the CLI.
    """

    socket_path: str
    timeout: float = 60.0

    @classmethod
    def detect(cls, env: Mapping[str, str] | None = None) -> EngineAPI | None:
        """The local socket, when the docker CLI would use it too (no other host or context chosen)."""
        env = os.environ if env is None else env
        if env.get("DOCKER_CONTEXT") or env.get("DOCKER_TLS_VERIFY"):
            return None
        host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if not host.startswith("unix://"):
            return None
        config = Path(env.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
        try:
            current = json.loads(config.read_text()).get("currentContext")
        except (OSError, ValueError, AttributeError):
            current = None
        if current not in (None, "", "default"):
            return None
        path = host.removeprefix("unix://")
        return cls(path) if os.path.exists(path) else None

    def request(
        self, method: str, path: str, body: Iterable[bytes] | None = None, timeout: float | None = -1.0
    ) -> tuple[int, bytes]:
        """One request; ``timeout=None`` waits as long as the engine works (a large load)."""
        headers = {"Content-Type": "application/x-tar"} if body is not None else {}
        wait = self.timeout if timeout == -1.0 else timeout
        return unixhttp.request(self.socket_path, method, path, body=body, headers=headers, timeout=wait)

    @staticmethod
    def quote(ref: str) -> str:
        return urllib.parse.quote(ref, safe="/:@")


class Engine(NamedTuple):
    version: str
    platform: str  # e.g. linux/amd64


class ImageInfo(NamedTuple):
    """The parts of ``docker image inspect`` that stagecache uses."""

    id: str
    repo_tags: tuple[str, ...]
    repo_digests: tuple[str, ...]
    labels: Mapping[str, str]
    os: str
    architecture: str
    size: int
    cmd: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()  # diff IDs, base first
    onbuild: tuple[str, ...] = ()  # ONBUILD triggers, run when this image is a FROM base

    @classmethod
    def from_inspect(cls, data: Mapping[str, Any]) -> ImageInfo:
        config = data.get("Config") or {}
        return cls(
            id=data["Id"],
            repo_tags=tuple(data.get("RepoTags") or ()),
            repo_digests=tuple(data.get("RepoDigests") or ()),
            labels=dict(config.get("Labels") or {}),
            os=data.get("Os", ""),
            architecture=data.get("Architecture", ""),
            size=int(data.get("Size") or 0),
            cmd=tuple(config.get("Cmd") or ()),
            entrypoint=tuple(config.get("Entrypoint") or ()),
            layers=tuple((data.get("RootFS") or {}).get("Layers") or ()),
            onbuild=tuple(config.get("OnBuild") or ()),
        )


class Docker:
    """A thin, typed face over the docker CLI.

    ``api`` is the fast path for inspect, tag, version and load (None: the CLI only); it is dropped
    after the first request that fails.
    """

    def __init__(self, runner: Runner = run, binary: str = "docker", api: EngineAPI | None = None) -> None:
        self.runner = runner
        self.binary = binary
        self.api = api
        self._engine: Engine | None = None

    @classmethod
    def local(cls) -> Docker:
        """The docker CLI, with the engine's socket for the hot calls where it is the CLI's engine too."""
        return cls(api=EngineAPI.detect())

    def _api(self, method: str, path: str, body: Iterable[bytes] | None = None) -> tuple[int, bytes] | None:
        """A request on the socket; None (fall back to the CLI) when there is no socket or it fails."""
        if self.api is None:
            return None
        trace.debug(f"API {method} {path}")
        try:
            return self.api.request(method, path, body)
        except OSError as exc:
            trace.debug(f"API unavailable ({exc}); using the CLI")
            self.api = None
            return None

    def _run(self, *args: str, **kwargs: Any) -> Completed:
        return self.runner([self.binary, *args], **kwargs)

    # --- engine -------------------------------------------------------------------------------------
    def engine(self) -> Engine:
        """The engine's version and default platform (asked once); EngineError when none answers."""
        if self._engine is None and (answer := self._api("GET", "/version")) and answer[0] == 200:
            with contextlib.suppress(ValueError, AttributeError):  # not the answer expected: ask the CLI
                data = json.loads(answer[1])
                if data.get("Version") and data.get("Os") and data.get("Arch"):
                    self._engine = Engine(version=data["Version"], platform=f"{data['Os']}/{data['Arch']}")
        if self._engine is None:
            done = self._run(
                "version", "--format", "{{.Server.Version}} {{.Server.Os}}/{{.Server.Arch}}", check=False
            )
            words = done.stdout.split()
            if done.returncode != 0 or len(words) != 2:
                lines = done.stderr.strip().splitlines()
                detail = lines[-1] if lines else "no answer"
                raise EngineError(f"the Docker engine is not reachable ({detail}): run scripts/ensure-engine")
            self._engine = Engine(version=words[0], platform=words[1])
        return self._engine

    # --- images -------------------------------------------------------------------------------------
    def image_inspect(self, ref: str) -> ImageInfo | None:
        """Inspect one image; ``None`` when the daemon does not have it."""
        answer = self._api("GET", f"/images/{EngineAPI.quote(ref)}/json")
        if answer is not None and answer[0] in (200, 404):
            return ImageInfo.from_inspect(json.loads(answer[1])) if answer[0] == 200 else None
        done = self._run("image", "inspect", ref, check=False)
        if done.returncode != 0:
            if "No such image" in done.stderr or "no such image" in done.stderr.lower():
                return None
            raise CommandError(done.argv, done.returncode, done.stderr)
        items = json.loads(done.stdout)
        return ImageInfo.from_inspect(items[0]) if items else None

    def tag(self, source: str, target: str) -> None:
        name, tag = split_tag(target)
        query = urllib.parse.urlencode({"repo": name, "tag": tag})
        answer = self._api("POST", f"/images/{EngineAPI.quote(source)}/tag?{query}")
        if answer is None or answer[0] != 201:
            self._run("image", "tag", source, target)

    def key_tagged(self) -> list[tuple[str, ImageInfo, str]]:
        """Every ``<repository>:sc-<key>`` tag in the daemon: (reference, image, created)."""
        done = self._run(
            "images", "--filter", f"label={LABEL_PREFIX}.key", "--format", "{{.Repository}}:{{.Tag}}"
        )
        refs = sorted({r for r in done.stdout.split() if r.rpartition(":")[2].startswith("sc-")})
        if not refs:
            return []
        inspected = self._run("image", "inspect", "--format", "{{json .}}", *refs, check=False)
        out = []
        for ref, line in zip(refs, inspected.stdout.splitlines(), strict=False):
            data = json.loads(line)
            out.append((ref, ImageInfo.from_inspect(data), str(data.get("Created", ""))))
        return out

    def pull(self, ref: str) -> Completed:
        return self._run("pull", "--quiet", ref, check=False)

    def remove_container(self, name: str) -> None:
        self._run("rm", "--force", name, check=False)

    def untag(self, ref: str) -> bool:
        """Remove one tag (the image goes too if nothing else names it); False if the engine refused."""
        return self._run("image", "rm", ref, check=False).returncode == 0

    def untag_repository(self, repository: str) -> None:
        """Remove every tag of ``repository``; an image that other tags still name stays."""
        done = self._run(
            "images", "--format", "{{.Repository}}:{{.Tag}}", "--filter", f"reference={repository}"
        )
        refs = sorted({line for line in done.stdout.split() if not line.endswith(":<none>")})
        if refs:
            self._run("image", "rm", *refs, check=False)

    def remove_image(self, *refs: str, force: bool = False) -> None:
        if refs:
            self._run(*argv("image", "rm", force=force), *refs, check=False)

    # --- building -----------------------------------------------------------------------------------
    def build(
        self,
        *,
        context: Path,
        dockerfile: Path,
        target: str | None,
        tags: Sequence[str],
        build_args: Mapping[str, str],
        labels: Mapping[str, str],
        platform: str | None = None,
        no_cache: bool = False,
        quiet: bool = False,
        iidfile: Path,
    ) -> Completed:
        """``docker buildx build --load`` one target. Progress goes to the terminal unless ``quiet``."""
        args = argv(
            "buildx",
            "build",
            file=str(dockerfile),
            target=target,
            tag=list(tags),
            build_arg=[f"{k}={v}" for k, v in build_args.items()],
            label=[f"{k}={v}" for k, v in labels.items()],
            platform=platform,
            no_cache=no_cache,
            iidfile=str(iidfile),
            progress="plain" if quiet else None,
            load=True,
        )
        args.append(str(context))
        return self._run(*args, capture=quiet, check=False)

    def save_file(self, image: str, path: Path) -> None:
        """``docker save -o PATH IMAGE``."""
        self._run("save", "--output", str(path), image)

    def load(self, chunks: Iterable[bytes]) -> str:
        """Feed a ``docker save`` stream to ``docker load``; returns what it printed."""
        if self.api is not None:
            return self._api_load(chunks)
        import subprocess
        import tempfile

        args = [self.binary, "load", "--quiet"]
        trace.debug("$ " + " ".join(args))
        with (
            tempfile.TemporaryFile() as err_file,
            subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err_file) as proc,
        ):
            assert proc.stdin is not None
            assert proc.stdout is not None
            try:
                for data in chunks:
                    proc.stdin.write(data)
            except BrokenPipeError:
                pass  # docker load gave up; its exit code and stderr say why
            except BaseException:
                proc.kill()
                raise
            finally:
                with contextlib.suppress(BrokenPipeError):
                    proc.stdin.close()
            out = proc.stdout.read().decode(errors="replace")
            proc.wait()
            err_file.seek(0)
            err = err_file.read().decode(errors="replace")
        if proc.returncode != 0:
            raise CommandError(args, proc.returncode, err)
        return out

    def _api_load(self, chunks: Iterable[bytes]) -> str:
        assert self.api is not None
        trace.debug("API POST /images/load")
        try:
            status, body = self.api.request("POST", "/images/load?quiet=1", chunks, timeout=None)
        except OSError as exc:
            raise CommandError(["POST", "/images/load"], 1, f"the engine's socket failed: {exc}") from None
        messages = [json.loads(line) for line in body.splitlines() if line.strip().startswith(b"{")]
        errors = (
            [str(m.get("error") or m.get("message")) for m in messages if "error" in m]
            if status == 200
            else []
        )
        if status != 200 or errors:
            detail = "; ".join(errors) or body.decode(errors="replace").strip()
            raise CommandError(["POST", "/images/load"], status, detail)
        return "".join(str(m.get("stream", "")) for m in messages)

    # --- compose ------------------------------------------------------------------------------------
    def compose_config(self, files: Sequence[Path], project_dir: Path) -> dict[str, Any]:
        """The fully resolved compose model, as ``docker compose config`` computes it."""
        args = ["compose", "--project-directory", str(project_dir)]
        for f in files:
            args += ["-f", str(f)]
        done = self._run(*args, "config", "--format", "json", check=False)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            detail = lines[-1] if lines else f"exit {done.returncode}"
            raise ConfigError(
                f"{files[0] if files else project_dir}: docker compose cannot read it: {detail}"
            )
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def compose(self, project: Compose, *args: str, capture: bool = True, check: bool = True) -> Completed:
        """``docker compose -p NAME -f FILE… ARGS``."""
        base = ["compose", "--project-directory", str(project.directory), "--project-name", project.name]
        for f in project.files:
            base += ["-f", str(f)]
        return self._run(*base, *args, capture=capture, check=check)

    def compose_ps(self, project: Compose) -> list[dict[str, Any]]:
        """The project's containers (all states), as ``docker compose ps --format json`` lists them."""
        done = self.compose(project, "ps", "--all", "--format", "json", check=False)
        text = done.stdout.strip()
        if not text:
            return []
        if text.startswith("["):
            rows: list[dict[str, Any]] = json.loads(text)
            return rows
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def health_log(self, container: str) -> str:
        """The last healthcheck output of a container ('' when it has none)."""
        done = self._run("inspect", "--format", "{{json .State.Health}}", container, check=False)
        try:
            health = json.loads(done.stdout) if done.returncode == 0 else None
        except ValueError:
            return ""
        if not health or not health.get("Log"):
            return ""
        last = health["Log"][-1]
        return f"exit {last.get('ExitCode')}: {str(last.get('Output', '')).strip()}"

    def project_leftovers(self, project_name: str) -> dict[str, list[str]]:
        """Containers, networks and volumes still labelled with a compose project name."""
        label = f"label=com.docker.compose.project={project_name}"
        out: dict[str, list[str]] = {}
        for kind, args in (
            ("containers", ["ps", "--all", "--quiet", "--filter", label]),
            ("networks", ["network", "ls", "--quiet", "--filter", label]),
            ("volumes", ["volume", "ls", "--quiet", "--filter", label]),
        ):
            out[kind] = self._run(*args).stdout.split()
        return out

    def run_container(self, image: str, command: Sequence[str], options: Sequence[str]) -> int:
        """``docker run --rm OPTIONS IMAGE COMMAND`` attached to the terminal; returns its exit code."""
        return self._run("run", "--rm", *options, image, *command, capture=False, check=False).returncode

    def capture_in(self, image: str, entrypoint: str, command: Sequence[str]) -> Completed:
        """Run a short command in a throwaway container of ``image`` and capture its output."""
        options = [
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            entrypoint,
            "--label",
            f"{LABEL_PREFIX}.probe=1",
        ]
        return self._run("run", *options, image, *command, check=False)


def split_tag(ref: str) -> tuple[str, str]:
    """``repo:tag`` -> (repo, tag); no tag means ``latest`` (a registry's port is not a tag)."""
    name, sep, tag = ref.rpartition(":")
    if not sep or "/" in tag:
        return ref, "latest"
    return name, tag


class Compose(NamedTuple):
    """A compose project: its files, directory and the project name to run it under."""

    files: tuple[Path, ...]
    directory: Path
    name: str
