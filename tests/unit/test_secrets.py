"""Secret build args: never printed, never in an argv `ps` shows, redacted by an HMAC under the store's
own key (issue 12, Secrets, findings 1-3). No engine: a recording runner, the fake engine, real files."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

import pytest

from stagecache import process, redaction, trace
from stagecache.app import resolver_for
from stagecache.engine.docker import Docker
from stagecache.errors import BuildError, CommandError, ConfigError
from stagecache.key.digest import canonical, compute, diff
from stagecache.key.inputs import collect
from stagecache.key.spec import BuildSecret, TargetSpec, secret_digest
from stagecache.process import Completed
from stagecache.project.settings import Target
from tests.fakes import FakeEngine, Images

SECRET = "supersecret-4711"
DOCKERFILE = "FROM python:3.11-slim AS app\nARG API_TOKEN\nARG LEVEL=1\nCOPY app.py /app/\n"


@pytest.fixture(autouse=True)
def fresh_masking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts with no remembered value and the default patterns, and no -v."""
    monkeypatch.setattr(redaction, "_values", set())
    monkeypatch.setattr(redaction, "_patterns", None)
    monkeypatch.setattr(trace, "enabled", False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    root.mkdir()
    (root / "Dockerfile").write_text(DOCKERFILE)
    (root / "app.py").write_text("print(1)\n")
    return root


def spec_of(project: Path, token: str = SECRET, **extra: str) -> TargetSpec:
    args = {"API_TOKEN": token, **extra}
    return TargetSpec("app", project, project / "Dockerfile", "app", args)


def inputs_of(spec: TargetSpec, salt: bytes = b"k" * 32) -> object:
    return collect(spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64", salt=lambda: salt)


class Recorder:
    """A runner that records each argv and the environment it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[str], dict[str, str] | None]] = []

    def __call__(
        self,
        argv: Sequence[str],
        *,
        check: bool = True,
        capture: bool = True,
        stdin: IO[bytes] | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> Completed:
        self.calls.append((list(argv), dict(env) if env is not None else None))
        return Completed(list(argv), 0, "", "")


# --- 1. never printed ---------------------------------------------------------------------------------
def test_the_verbose_log_of_a_command_shows_no_secret_build_arg(capsys: pytest.CaptureFixture[str]) -> None:
    trace.enabled = True
    process.run(
        [sys.executable, "-c", "pass", "--build-arg", f"API_TOKEN={SECRET}", "--build-arg", "LEVEL=2"]
    )
    process.spawn([sys.executable, "-c", "pass", f"--build-arg=DB_PASSWORD={SECRET}"]).wait()
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "--build-arg API_TOKEN=<redacted> --build-arg LEVEL=2" in err  # the others stay readable
    assert "--build-arg=DB_PASSWORD=<redacted>" in err


def test_the_log_shows_the_names_of_what_a_command_gets_in_its_environment_not_the_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    trace.enabled = True
    done = process.run(
        [sys.executable, "-c", "import os; print(os.environ['API_TOKEN'])"], env={"API_TOKEN": SECRET}
    )
    assert done.stdout.strip() == SECRET  # the child has it
    err = capsys.readouterr().err
    assert SECRET not in err
    assert "API_TOKEN=… " in err


def test_a_failed_command_names_no_secret(capsys: pytest.CaptureFixture[str]) -> None:
    redaction.remember(SECRET)  # a secret build arg this process was given
    script = f"import sys; sys.stderr.write('token {SECRET} refused'); sys.exit(3)"
    with pytest.raises(CommandError) as raised:
        process.run([sys.executable, "-c", script, "-e", f"DB_PASSWORD={SECRET}"])
    assert SECRET not in str(raised.value)
    assert SECRET not in " ".join(raised.value.argv)
    assert SECRET not in raised.value.stderr
    assert "token <redacted> refused" in str(raised.value)


def test_a_failed_build_names_no_secret() -> None:
    redaction.remember(SECRET)
    error = BuildError("app", f"#5 ERROR: curl: (22) https://x.test/?t={SECRET} 403\n")
    assert SECRET not in str(error)
    assert SECRET not in error.log_tail
    assert "t=<redacted> 403" in str(error)


def test_a_label_or_filter_named_like_a_secret_is_shown() -> None:
    words = ["--label", "org.stagecache.key=sha256:ab", "--filter", "label=org.stagecache.key", "-e", "KEY=v"]
    assert redaction.argv(words) == [*words[:-1], "KEY=<redacted>"]


def test_short_values_are_not_masked_in_free_text() -> None:
    redaction.remember("1")
    assert redaction.text("exit 1") == "exit 1"


def test_the_project_patterns_decide_what_looks_secret() -> None:
    redaction.use_patterns(["*_CRED"])
    assert redaction.argv(["--build-arg", "AWS_CRED=x", "--build-arg", "API_TOKEN=y"]) == [
        "--build-arg", "AWS_CRED=<redacted>", "--build-arg", "API_TOKEN=y",
    ]  # fmt: skip


# --- 2. never in an argv `ps` shows -------------------------------------------------------------------
def test_secret_build_args_reach_the_docker_cli_through_its_environment(tmp_path: Path) -> None:
    runner = Recorder()
    Docker(runner=runner).build(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="app", tags=[],
        build_args={"API_TOKEN": SECRET, "LEVEL": "2"}, labels={}, iidfile=tmp_path / "iid", quiet=True,
        env_args=["API_TOKEN"],
        secrets=[BuildSecret("pip", "env", "PIP_TOKEN"), BuildSecret("npmrc", "file", "/home/u/.npmrc")],
    )  # fmt: skip
    ((argv, env),) = runner.calls
    assert SECRET not in " ".join(argv)
    assert argv[argv.index("API_TOKEN") - 1] == "--build-arg"  # a bare name: docker reads its environment
    assert "LEVEL=2" in argv
    assert env == {"API_TOKEN": SECRET}
    secrets = [w for i, w in enumerate(argv) if w == "--secret" or argv[i - 1] == "--secret"]
    assert secrets == ["--secret", "id=pip,env=PIP_TOKEN", "--secret", "id=npmrc,src=/home/u/.npmrc"]


def test_a_build_shows_its_progress_through_the_mask(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BuildKit's progress names a RUN step by its command with the build args expanded
    (`#5 [app 2/4] RUN test -n "supersecret…"`, seen on Docker 26.1): a docker CLI that prints it."""
    docker = tmp_path / "docker"
    docker.write_text(
        "#!/bin/sh\n"
        f'printf "%s\\n" "$@" > {tmp_path}/argv\n'
        'echo "#5 [app 2/4] RUN test -n \\"$API_TOKEN\\"" >&2\n'
        "echo '#6 ERROR: process did not complete successfully' >&2\n"
        "exit 1\n"
    )
    docker.chmod(0o755)
    done = Docker(binary=str(docker)).build(
        context=tmp_path, dockerfile=tmp_path / "Dockerfile", target="app", tags=[],
        build_args={"API_TOKEN": SECRET}, labels={}, iidfile=tmp_path / "iid", env_args=["API_TOKEN"],
    )  # fmt: skip
    err = capsys.readouterr().err
    assert '#5 [app 2/4] RUN test -n "<redacted>"' in err  # shown as it comes, masked
    assert SECRET not in err
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == "#6 ERROR: process did not complete successfully"  # for BuildError
    assert SECRET not in (tmp_path / "argv").read_text()


def test_the_resolver_passes_secret_looking_args_by_environment_and_the_secrets(
    project: Path, tmp_path: Path
) -> None:
    engine = FakeEngine()
    secrets = (BuildSecret("pip", "env", "PIP_TOKEN"),)
    spec = spec_of(project, LEVEL="2")._replace(secrets=secrets)
    resolver_for(engine, None).resolve(Target(spec=spec, repository="sc-test/app"))
    assert engine.built_secrets == [({"API_TOKEN": SECRET}, list(secrets))]


# --- 3. the redaction digest: an HMAC under the store's key ---------------------------------------------
def test_the_redaction_is_not_the_unsalted_digest_that_confirms_a_guess(project: Path) -> None:
    found = inputs_of(spec_of(project))
    shown = found.public["args"]["API_TOKEN"]  # type: ignore[attr-defined]
    assert shown.startswith("<redacted ")
    assert hashlib.sha256(SECRET.encode()).hexdigest()[:8] not in shown
    assert shown == f"<redacted {secret_digest(SECRET, b'k' * 32)[:8]}>"


def test_the_same_value_in_the_same_store_gives_the_same_digest_and_a_change_shows(project: Path) -> None:
    one = inputs_of(spec_of(project)).public  # type: ignore[attr-defined]
    assert inputs_of(spec_of(project)).public == one  # type: ignore[attr-defined]
    other_store = inputs_of(spec_of(project), salt=b"j" * 32).public  # type: ignore[attr-defined]
    assert other_store["args"]["API_TOKEN"] != one["args"]["API_TOKEN"]
    changed = inputs_of(spec_of(project, token="another-value")).public  # type: ignore[attr-defined]
    (line,) = diff(one, changed).other
    assert line.startswith("build arg API_TOKEN: '<redacted ")  # what `key --why` says
    assert "another-value" not in line


def test_neither_the_key_nor_the_manifest_confirms_a_guess_without_the_store_key(project: Path) -> None:
    """Everything `key --json` prints (the key and the manifest): an attacker who guesses the value
    cannot check the guess, as they could when the key counted sha256(value)."""
    salt = b"k" * 32
    found = inputs_of(spec_of(project), salt=salt)
    key = compute(found)  # type: ignore[arg-type]
    printed = json.loads(json.dumps({"key": key, "manifest": found.public}))  # type: ignore[attr-defined]
    assert SECRET not in json.dumps(printed)

    def key_with(counted: str) -> str:
        hashed = dict(printed["manifest"])
        rows = hashed.pop("files")
        hashed["args"] = {**hashed["args"], "API_TOKEN": counted}
        digest = hashlib.sha256(canonical(hashed))
        digest.update(b"\0")
        digest.update("\0".join(x for row in rows for x in row).encode())
        return "sha256:" + digest.hexdigest()

    assert (
        key_with("sha256:" + hashlib.sha256(SECRET.encode()).hexdigest()) != key
    )  # the guess is not confirmed
    assert key_with("sha256:" + secret_digest(SECRET, salt)) == key  # (the attack is spelled right)


def test_keys_of_targets_without_secret_args_do_not_depend_on_the_store_key(project: Path) -> None:
    spec = TargetSpec("app", project, project / "Dockerfile", "app", {"LEVEL": "2"})
    assert compute(inputs_of(spec, b"k" * 32)) == compute(inputs_of(spec, b"j" * 32))  # type: ignore[arg-type]
    asked: list[int] = []

    def salt() -> bytes:
        asked.append(1)
        return b"k" * 32

    collect(spec, images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64", salt=salt)
    assert asked == []  # the store's key is not even made


def test_a_watchers_memo_name_does_not_confirm_a_guess_either(project: Path) -> None:
    names: list[str] = []

    class Memo:
        def reuse(self, key: str, rules: object) -> None:
            names.append(key)

        def remember(self, *args: object) -> None:
            pass

    for salt in (b"k" * 32, b"j" * 32):
        collect(spec_of(project), images=Images(lambda ref: "sha256:aaa"), platform="linux/amd64",
                memo=Memo(), salt=lambda salt=salt: salt)  # type: ignore[misc]  # fmt: skip
    assert names[0] != names[1]  # the value enters a memo's name only through the store's key


# --- the redaction key file ------------------------------------------------------------------------------
def test_the_redaction_key_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    key = redaction.RedactionKey(tmp_path / "store", tmp_path / "cache")
    first = key()
    path = tmp_path / "store" / "v1" / "redaction.key"
    assert key.path == path
    assert len(first) == 32
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert redaction.RedactionKey(tmp_path / "store", tmp_path / "cache")() == first
    assert sorted(p.name for p in path.parent.iterdir()) == ["redaction.key"]  # no temp file left


def test_concurrent_makers_agree_on_one_key(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from stagecache.redaction import read_or_make; "
        "sys.stdout.write(read_or_make(Path(sys.argv[1])).hex())"
    )
    path = tmp_path / "v1" / "redaction.key"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(8)
    ]
    keys = {p.communicate()[0] for p in procs}
    assert len(keys) == 1
    assert keys == {bytes.fromhex(path.read_text().strip()).hex()}


def test_a_planted_symlink_is_refused_and_its_target_untouched(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "v1" / "redaction.key").symlink_to(victim)
    with pytest.raises(
        ConfigError, match=r"redaction.key: not a redaction key \(a symbolic link\); remove it"
    ):
        redaction.RedactionKey(tmp_path, tmp_path / "cache")()
    assert victim.read_text() == "precious\n"


def test_a_damaged_key_is_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "redaction.key").write_text("not hex\n")
    with pytest.raises(ConfigError, match=r"not a redaction key \(not 32 bytes in hex\)") as raised:
        redaction.RedactionKey(tmp_path, tmp_path / "cache")()
    assert "\n" not in str(raised.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes to read-only directories")
def test_a_store_that_cannot_be_written_leaves_the_key_to_the_cache_dir(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o555)
    key = redaction.RedactionKey(store, tmp_path / "cache")
    key()
    assert key.path == tmp_path / "cache" / "redaction.key"


def test_a_store_that_cannot_be_written_leaves_the_key_to_the_cache_dir_even_as_root(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.write_text("a file where the store's directory should be")
    key = redaction.RedactionKey(store, tmp_path / "cache")
    key()
    assert key.path == tmp_path / "cache" / "redaction.key"


def test_a_url_with_credentials_is_treated_as_a_secret_whatever_its_name(project: Path) -> None:
    """A proxy or an index URL carries its password: `HTTP_PROXY=http://user:pw@proxy:3128`."""
    proxy = "http://build:pr0xy-pass@proxy.test:3128"
    (project / "Dockerfile").write_text(DOCKERFILE + "ARG PIP_INDEX_URL\n")
    spec = TargetSpec("app", project, project / "Dockerfile", "app", {"PIP_INDEX_URL": proxy, "LEVEL": "2"})
    found = inputs_of(spec)
    assert found.public["args"]["PIP_INDEX_URL"].startswith("<redacted ")  # type: ignore[attr-defined]
    assert found.public["args"]["LEVEL"] == "2"  # type: ignore[attr-defined]
    assert redaction.argv(["--build-arg", f"PIP_INDEX_URL={proxy}"]) == [
        "--build-arg", "PIP_INDEX_URL=http://<redacted>@proxy.test:3128",
    ]  # fmt: skip
    engine = FakeEngine()
    resolver_for(engine, None).resolve(Target(spec=spec, repository="sc-test/app"))
    assert engine.built_secrets == [({"PIP_INDEX_URL": proxy}, [])]  # through the environment too
