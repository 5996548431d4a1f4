"""The one module that talks to Docker: the :class:`~stagecache.engine.base.Engine` the use cases get.

Every docker CLI call (engine, ``buildx`` and ``compose``) goes through the injected runner
(:func:`stagecache.process.run` by default), which logs the command and turns failures into
:class:`CommandError`; unit tests inject a recorder and check the argv. The calls a cache hit makes
(version, inspect, tag, load) go over the Engine API socket when the CLI would use it too.
"""

from __future__ import annotations

import contextlib
import json
import urllib.parse
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from .. import process, redaction, trace
from ..errors import CommandError, ConfigError, EngineError
from ..key.spec import NO_OPTIONS, BuildOptions, BuildSecret
from ..process import Completed, Runner, run
from ..refs import KEY_LABEL, LABEL_PREFIX, is_key_ref, split_tag
from .api import EngineAPI
from .base import NO_CONTEXTS, Compose, EngineInfo, ImageInfo


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


def image_context(ref: str) -> str:
    """A build context that is an image of the daemon's (BuildKit's ``docker-image://`` source)."""
    return f"docker-image://{ref}"


class Docker:
    """A thin, typed face over the docker CLI.

    ``api`` is the fast path for inspect, tag, version and load (None: the CLI only); it is dropped
    after the first request that fails.
    """

    def __init__(self, runner: Runner = run, binary: str = "docker", api: EngineAPI | None = None) -> None:
        self.runner = runner
        self.binary = binary
        self.api = api
        self._engine: EngineInfo | None = None
        self._image_store: str | None = None

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
    def engine(self) -> EngineInfo:
        """The engine's version and default platform (asked once); EngineError when none answers."""
        if self._engine is None and (answer := self._api("GET", "/version")) and answer[0] == 200:
            with contextlib.suppress(ValueError, AttributeError):  # not the answer expected: ask the CLI
                data = json.loads(answer[1])
                if data.get("Version") and data.get("Os") and data.get("Arch"):
                    self._engine = EngineInfo(
                        data["Version"], f"{data['Os']}/{data['Arch']}", str(data.get("ApiVersion", ""))
                    )
        if self._engine is None:
            done = self._run(
                "version", "--format", "{{.Server.Version}} {{.Server.Os}}/{{.Server.Arch}}", check=False
            )
            words = done.stdout.split()
            if done.returncode != 0 or len(words) != 2:
                lines = done.stderr.strip().splitlines()
                detail = lines[-1] if lines else "no answer"
                raise EngineError(
                    f"the Docker engine is not reachable ({detail}): start Docker Engine (with the "
                    "buildx and compose plugins), or point DOCKER_HOST at one"
                )
            self._engine = EngineInfo(words[0], words[1])
        return self._engine

    def image_store(self) -> str:
        """``containerd`` where the engine keeps images in containerd's store (``docker info``'s
        driver-type ``io.containerd.snapshotter.v1``), else ``classic`` (graph drivers: overlay2, ...)."""
        if self._image_store is None:
            answer = self._api("GET", "/info")
            status: object = None
            if answer is not None and answer[0] == 200:
                with contextlib.suppress(ValueError, AttributeError):
                    status = json.loads(answer[1]).get("DriverStatus")
            if status is None:
                done = self._run("info", "--format", "{{json .DriverStatus}}", check=False)
                with contextlib.suppress(ValueError):
                    status = json.loads(done.stdout) if done.returncode == 0 else None
            rows = status if isinstance(status, list) else []
            pairs = [tuple(p) for p in rows if isinstance(p, list) and len(p) == 2]
            containerd = ("driver-type", "io.containerd.snapshotter.v1") in pairs
            self._image_store = "containerd" if containerd else "classic"
        return self._image_store

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

    def key_tagged(self) -> list[tuple[str, ImageInfo]]:
        """Every ``<repository>:sc-<key>`` tag in the daemon, with its image."""
        done = self._run("images", "--filter", f"label={KEY_LABEL}", "--format", "{{.Repository}}:{{.Tag}}")
        refs = sorted({r for r in done.stdout.split() if is_key_ref(r)})
        if not refs:
            return []
        inspected = self._run("image", "inspect", "--format", "{{json .}}", *refs, check=False)
        # Paired by the tags each image has, not by position: an image removed in between (another
        # job's prune) is left out of the answer, and every later pair would shift.
        found = {}
        for line in inspected.stdout.splitlines():
            info = ImageInfo.from_inspect(json.loads(line))
            for tag in info.repo_tags:
                found[tag] = info
        return [(ref, found[ref]) for ref in refs if ref in found]

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
        options: BuildOptions = NO_OPTIONS,
        env_args: Collection[str] = (),
        secrets: Sequence[BuildSecret] = (),
        build_contexts: Mapping[str, str] = NO_CONTEXTS,
    ) -> Completed:
        """``docker buildx build --load`` one target. Progress goes to the terminal unless ``quiet``.

        ``options`` are compose's other ``build:`` keys, passed as ``docker compose build`` passes them.
        The build args named in ``env_args`` (the secret-looking ones) are passed as ``--build-arg NAME``,
        their values in the docker CLI's environment, which only its user can read, never in its argv,
        which every user can (``ps``); BuildKit gets the same value either way. BuildKit's progress
        names a ``RUN`` step by its command with the args expanded, so the progress of such a build is
        shown through a mask (:func:`stagecache.process.run_masked`). ``secrets`` are
        ``--secret id=…,src=…|env=…``: the CLI reads them, stagecache never does. ``build_contexts``
        maps a stage's name to an image in the daemon that stands in for the stage
        (``--build-context NAME=docker-image://REF``: BuildKit named contexts).
        """
        env = {k: v for k, v in build_args.items() if k in env_args}
        for value in env.values():
            redaction.remember(value)
        args = argv(
            "buildx",
            "build",
            file=str(dockerfile),
            target=target,
            tag=list(tags),
            build_arg=[k if k in env else f"{k}={v}" for k, v in build_args.items()],
            secret=[s.flag() for s in secrets],
            build_context=[f"{name}={image_context(ref)}" for name, ref in build_contexts.items()],
            label=[f"{k}={v}" for k, v in labels.items()],
            platform=platform,
            add_host=list(options.extra_hosts),
            network=options.network,
            shm_size=options.shm_size,
            ulimit=list(options.ulimits),
            allow=list(options.entitlements),
            cache_from=list(options.cache_from),
            cache_to=list(options.cache_to),
            no_cache=no_cache or options.no_cache,
            no_cache_filter=list(options.no_cache_filter),
            provenance=options.provenance,
            sbom=options.sbom,
            iidfile=str(iidfile),
            progress="plain" if quiet else None,
            load=True,
        )
        args.append(str(context))
        if env and not quiet:  # BuildKit shows a RUN step's command with the build args expanded
            return process.run_masked([self.binary, *args], env=env)
        return self._run(*args, capture=quiet, check=False, env=env or None)

    def bake(
        self, definition: Mapping[str, Any], targets: Sequence[str], *, metadata: Path, quiet: bool = False
    ) -> Completed:
        """``docker buildx bake`` of ``targets`` in ``definition`` (a bake file's JSON, written beside
        ``metadata``, where bake writes each target's result). Progress as :meth:`build` shows it."""
        bake_file = metadata.with_name("bake.json")
        bake_file.write_text(json.dumps(definition))
        progress = "plain" if quiet else None
        args = argv("buildx", "bake", file=str(bake_file), metadata_file=str(metadata), progress=progress)
        return self._run(*args, "--", *targets, capture=quiet, check=False)

    def save_file(self, image: str | Sequence[str], path: Path) -> None:
        """``docker save -o PATH IMAGE...`` (several images: a layer they share is written once)."""
        self._run("save", "--output", str(path), *([image] if isinstance(image, str) else image))

    @contextlib.contextmanager
    def save_stream(self, images: Sequence[str]) -> Iterator[IO[bytes]]:
        """``docker save IMAGE...`` read as it is written (no temp file); CommandError at the end of
        the block when it failed."""
        import tempfile

        with (
            tempfile.TemporaryFile() as err_file,
            process.spawn([self.binary, "save", *images], stdout=process.PIPE, stderr=err_file) as proc,
        ):
            assert proc.stdout is not None
            try:
                yield proc.stdout
            except BaseException:
                proc.kill()
                raise
            proc.stdout.read()  # what the reader left (an archive's end padding)
            if proc.wait() != 0:
                err_file.seek(0)
                raise CommandError(
                    ["docker", "save", *images], proc.returncode, err_file.read().decode(errors="replace")
                )

    def load(self, chunks: Iterable[bytes]) -> str:
        """Feed a ``docker save`` stream to ``docker load``; returns what it printed."""
        if self.api is not None:
            return self._api_load(chunks)
        import tempfile

        args = [self.binary, "load", "--quiet"]
        with (
            tempfile.TemporaryFile() as err_file,
            process.spawn(args, stdin=process.PIPE, stdout=process.PIPE, stderr=err_file) as proc,
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
            out: str = proc.stdout.read().decode(errors="replace")
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
    def compose_config(
        self,
        directory: Path,
        files: Sequence[Path] = (),
        *,
        project_name: str | None = None,
        profiles: Sequence[str] = (),
        env_files: Sequence[Path] = (),
    ) -> dict[str, Any]:
        """The fully resolved compose model, as ``docker compose config`` computes it.

        Run in ``directory`` as the user's own ``docker compose`` would be: without ``files``, compose
        finds its files itself (``compose.yaml`` and its override, ``COMPOSE_FILE``), and reads
        ``.env``, ``COMPOSE_PROFILES`` and ``COMPOSE_PROJECT_NAME`` as it always does."""
        args = ["compose"]
        for f in files:
            args += ["-f", str(f)]
        if project_name:
            args += ["--project-name", project_name]
        for profile in profiles:
            args += ["--profile", profile]
        for env_file in env_files:
            args += ["--env-file", str(env_file)]
        done = self._run(*args, "config", "--format", "json", check=False, cwd=directory)
        if done.returncode != 0:
            lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
            detail = lines[-1] if lines else f"exit {done.returncode}"
            raise ConfigError(f"{files[0] if files else directory}: docker compose cannot read it: {detail}")
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def compose(self, project: Compose, *args: str, capture: bool = True, check: bool = True) -> Completed:
        """``docker compose --project-directory D -p NAME -f FILE… [--profile P…] [--env-file E…] ARGS``."""
        return self._run("compose", *project.global_argv(), *args, capture=capture, check=check)

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

    # --- a test run's own containers and volumes --------------------------------------------------------
    def container_state(self, container: str) -> dict[str, Any]:
        """``.State`` of a container (``Status``, ``ExitCode``, ``Error``: the engine's own message when
        it could not start it); {} when there is no such container."""
        args = ["inspect", "--type", "container", "--format", "{{json .State}}", container]
        done = self._run(*args, check=False)
        try:
            state = json.loads(done.stdout) if done.returncode == 0 else None
        except ValueError:
            return {}
        return state if isinstance(state, dict) else {}

    def remove_labelled_volumes(self, label: str) -> list[str]:
        """Remove the volumes that carry ``label`` (``NAME=VALUE``): only those a test run created."""
        names = self._run("volume", "ls", "--quiet", "--filter", f"label={label}", check=False).stdout.split()
        if names:
            self._run("volume", "rm", "--force", *names, check=False)
        return names
