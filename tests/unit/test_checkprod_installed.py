"""What a dev-only package in a prod image is there for (stagecache.checkprod.installed), from probe rows.

The rows are those of a real case: a Poetry 2 service whose prod stage runs ``pip install --upgrade pip
poetry`` (Poetry then brings virtualenv, filelock, platformdirs, which the lock has only for the dev
group's pre-commit), next to a stage that leaks pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys

from stagecache.checkprod.graph import DevPackages
from stagecache.checkprod.installed import PROBE, Installed, classify, installs_in, parse_probe

SITE = "/usr/local/lib/python3.13/site-packages"
ENV = {"python_version": "3.13", "python_full_version": "3.13.3", "sys_platform": "linux"}


def dist(name: str, version: str, requires: list[str] | None = None, *, requested: bool = False,
         site: str = SITE, installer: str = "pip") -> Installed:  # fmt: skip
    return Installed(
        name, version, f"{site}/{name}-{version}.dist-info", requires or [], installer, requested
    )


DEV = DevPackages(
    {"virtualenv", "filelock", "platformdirs", "distlib", "pytest", "iniconfig", "pluggy", "setuptools"},
    "poetry.lock (each package's groups, Poetry 2)",
    {
        "virtualenv": "20.30.0",
        "filelock": "3.18.0",
        "platformdirs": "4.3.7",
        "pytest": "8.3.5",
        "pluggy": "1.5.0",
        "iniconfig": "2.1.0",
        "distlib": "0.3.9",
    },
)

PRESENT = [
    dist("fastapi", "0.115.12", ["starlette<0.47"], requested=True),
    dist(
        "poetry",
        "2.1.3",
        ["virtualenv<21,>=20.26.6", "platformdirs<5,>=3.0.0", "pkginfo<2.0,>=1.12"],
        requested=True,
    ),
    dist(
        "virtualenv", "20.31.2", ["distlib<1,>=0.3.7", "filelock<4,>=3.12.2", "pytest>=7.4; extra == 'test'"]
    ),
    dist("distlib", "0.3.9"),
    dist("filelock", "3.18.0"),
    dist("platformdirs", "4.3.8"),
    dist(
        "pytest",
        "8.3.4",
        ["iniconfig", "pluggy<2,>=1.5", "colorama; sys_platform == 'win32'"],
        requested=True,
    ),
    dist("iniconfig", "2.1.0"),
    # the same name in another environment: poetry's requirements do not reach across
    dist("pluggy", "1.5.0", site="/opt/tools/lib/python3.13/site-packages", installer="uv"),
    dist("setuptools", "65.5.1", site="/usr/local/lib/python3.13/site-packages", installer=""),
]
BASE = [dist("setuptools", "65.5.1", installer=""), dist("pip", "25.0")]


def test_each_dev_only_package_is_told_apart() -> None:
    asked: list[str] = []

    def base() -> list[Installed]:
        asked.append("base")
        return BASE

    installs = installs_in([("pip install --upgrade pip poetry && poetry config virtualenvs.create false", 6,
                             "Dockerfile")])  # fmt: skip
    findings = {f.package.name: f for f in classify(DEV, PRESENT, ENV, base=base, installs=installs,
                                                    base_name="the base image python:3.13-slim")}  # fmt: skip
    assert asked == ["base"]
    verdicts = {name: f.verdict for name, f in findings.items()}
    tools = {"virtualenv", "distlib", "filelock", "platformdirs"}
    assert {name for name, verdict in verdicts.items() if verdict == "tool"} == tools
    assert {name: verdict for name, verdict in verdicts.items() if name not in tools} == {
        "pytest": "leak",
        "iniconfig": "leak",
        "pluggy": "leak",
        "setuptools": "base",
    }
    assert findings["virtualenv"].why == (
        "installed with poetry 2.1.3, which Dockerfile:6 installs with pip; the lock pins 20.30.0 for dev"
    )
    assert findings["virtualenv"].lock_version == "20.30.0"
    assert findings["distlib"].why == (
        "installed with poetry 2.1.3 (through virtualenv 20.31.2), which Dockerfile:6 installs with pip"
    )
    assert findings["pytest"].why == "installed by pip on request; the lock pins 8.3.5 for dev"
    assert findings["iniconfig"].why == "installed by pip as a dependency of pytest 8.3.4"
    assert findings["pluggy"].why == "installed by uv"  # pytest is in another environment
    assert findings["setuptools"].why == "comes with the base image python:3.13-slim"
    assert [f.counted for f in findings.values()].count(True) == 3


def test_up_to_what_was_asked_for() -> None:
    """virtualenv 21 needs python-discovery (in no lock), which needs filelock (dev-only here)."""
    present = [
        dist("poetry", "2.5.1", ["virtualenv>=20"], requested=True),
        dist("virtualenv", "21.15.11", ["python-discovery>=1", "distlib"]),
        dist("python-discovery", "1.9.6", ["filelock>=3"]),
        dist("filelock", "4.3.1"),
    ]
    installs = installs_in([("pip install --upgrade pip poetry", 8, "Dockerfile")])
    findings = {f.package.name: f.why for f in classify(DEV, present, ENV, installs=installs)}
    assert findings["filelock"] == (
        "installed with poetry 2.5.1 (through virtualenv 21.15.11, python-discovery 1.9.6), "
        "which Dockerfile:8 installs with pip; the lock pins 3.18.0 for dev"
    )


def test_a_tool_that_the_dockerfile_does_not_name() -> None:
    present = [dist("poetry", "1.8.3", ["virtualenv>=20"], requested=True), dist("virtualenv", "20.30.0")]
    (finding,) = classify(DEV, present, ENV)
    assert (finding.verdict, finding.why) == (
        "tool",
        "installed with poetry 1.8.3, which pip installed on request",
    )
    assert finding.lock_version is None  # the lock's own version: nothing to say


def test_a_copy_vendored_inside_another_package() -> None:
    vendored = dist("packaging", "24.2", site=f"{SITE}/setuptools/_vendor")
    dev = DevPackages({"packaging"}, "uv.lock", {"packaging": "24.2"})
    (finding,) = classify(dev, [dist("setuptools", "80.9.0"), vendored], ENV)
    assert (finding.verdict, finding.why) == (
        "tool",
        "vendored inside setuptools: its own copy, not an installed package",
    )


def test_nothing_dev_only_asks_nothing_of_the_base_image() -> None:
    def base() -> list[Installed]:
        raise AssertionError("not asked")

    assert classify(DEV, [dist("fastapi", "0.115.12")], ENV, base=base) == []


def test_where_the_dockerfile_installs_a_tool() -> None:
    installs = installs_in([
        ('"$POETRY_HOME/bin/pip" install "poetry==$POETRY_VERSION"', 3, "Dockerfile"),
        ("uv pip install --system -r requirements.txt ruff==0.6 && echo done", 9, "docker/Dockerfile.prod"),
        ("python -m pip install --no-cache-dir -i https://pypi.org/simple Black[d]>=24", 12, "Dockerfile"),
        ("pipx install pre-commit; pip3.11 install --target /opt/x Tox", 15, "Dockerfile"),
        ("apt-get install -y python3-pip", 20, "Dockerfile"),
    ])  # fmt: skip
    assert installs("poetry") == "which Dockerfile:3 installs with pip"
    assert installs("ruff") == "which docker/Dockerfile.prod:9 installs with uv pip"
    assert installs("requirements-txt") is None  # the value of -r is a file
    assert installs("black") == "which Dockerfile:12 installs with pip"
    assert installs("pre-commit") == "which Dockerfile:15 installs with pipx"
    assert installs("tox") == "which Dockerfile:15 installs with pip3.11"
    assert installs("python3-pip") is None  # apt is not a Python installer


def test_probe_output_old_and_new() -> None:
    env, rows = parse_probe('[["pytest", "8.1", "/site/pytest-8.1.dist-info"]]\n')
    assert env is None
    assert rows == [Installed("pytest", "8.1", "/site/pytest-8.1.dist-info")]
    env, rows = parse_probe(
        json.dumps(ENV) + "\n" + json.dumps([["A_b", "1", "/s/A_b-1.dist-info", ["c"], "uv", True]])
    )
    assert env == ENV
    assert (rows[0].key, rows[0].requires, rows[0].installer, rows[0].requested) == ("a-b", ["c"], "uv", True)


def test_the_probe_runs_on_this_python() -> None:
    """The probe is a script for the image's Python: run here over this virtualenv (not the whole file
    system, for time), it finds at least this test's packages."""
    assert 'os.walk("/")' in PROBE
    script = PROBE.replace('os.walk("/")', f"os.walk({sys.prefix!r})")
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
    )
    env, rows = parse_probe(done.stdout)
    assert env is not None
    assert env["python_version"] == f"{sys.version_info.major}.{sys.version_info.minor}"
    names = {r.key for r in rows}
    assert {"pytest", "packaging"} <= names
    pytest_row = next(r for r in rows if r.key == "pytest")
    assert any(req.startswith("pluggy") for req in pytest_row.requires)
