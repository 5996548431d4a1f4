"""Which changes a watcher reports leave a memo's file rows true: pure logic, no watcher."""

from __future__ import annotations

import os
import stat

import pytest

from stagecache.key.ignore import IgnoreRules
from stagecache.key.inputs import memo_key
from stagecache.speed.watch import Memo, to_refresh, unreached


def _memo(selected: list[str], context: list[str]) -> Memo:
    rows = [[path, "file", "0o644", "d"] for path in sorted(selected)]
    return Memo("i:1", rows, "\0".join(sorted(context)).encode(), [], [], [], [])


@pytest.mark.parametrize(
    ("ignore", "path", "expected"),
    [
        ("", "", True),  # the context's root is not an entry
        ("", "a/b.txt", False),
        ("build\n", "build", True),
        ("build\n", "build/x/y.o", True),
        ("build\n", "src/build", False),  # a pattern without a slash is anchored at the root
        ("*.log\n", "app.log", True),
        ("*.log\n", "logs/app.log", False),
        ("**/*.log\n", "logs/app.log", True),
        ("build\n!build/keep\n", "build/other", True),  # build/ is entered, for keep only
        ("build\n!build/keep\n", "build/keep", False),
        ("build/*\n!build/keep\n", "build/other", True),
        ("vendor\n!src/x\n", "vendor/lib.py", True),  # literal exceptions elsewhere: never entered
        ("vendor\n!*.md\n", "vendor/lib.py", False),  # a wildcard exception: every excluded dir is walked
    ],
)
def test_unreached_follows_the_walk(ignore: str, path: str, expected: bool) -> None:
    assert unreached(path, IgnoreRules.parse(ignore)) is expected


CONTEXT = ["Dockerfile", "README.md", "src", "src/app.py", "src/util.py", "docs", "docs/guide.md"]
SELECTED = ["src", "src/app.py", "src/util.py"]


def _stat(mode: int) -> os.stat_result:
    return os.stat_result((mode, 1, 1, 1, 0, 0, 5, 0, 0, 0))


FILE, DIR = _stat(stat.S_IFREG | 0o644), _stat(stat.S_IFDIR | 0o755)
WALK = None  # the memo cannot be brought up to date: walk the context


@pytest.mark.parametrize(
    ("changed", "now", "expected"),
    [
        ([], {}, []),
        (["src/app.py"], {"src/app.py": FILE}, [1]),  # a file the target reads, edited: its row again
        (["src/app.py", "src/util.py"], {"src/app.py": FILE, "src/util.py": FILE}, [1, 2]),
        (["src/app.py"], {}, WALK),  # removed
        (["src/app.py"], {"src/app.py": DIR}, WALK),  # turned into a directory
        (["src"], {"src": DIR}, WALK),  # its directory (a mode change, or renamed away)
        (["README.md"], {"README.md": FILE}, []),  # in the context, not read by the target
        (["docs"], {}, []),  # an unread directory removed
        (["src/new.py"], {"src/new.py": FILE}, WALK),  # new: a directory source may pick it up
        (["notes.txt"], {"notes.txt": FILE}, WALK),  # new anywhere: a wildcard may pick it up
        ([".app.py.swp"], {}, []),  # made and removed since the memo
        (["build/out.o"], {"build/out.o": FILE}, []),  # ignored
        (["README.md", "src/util.py"], {"README.md": FILE, "src/util.py": FILE}, [2]),
        (["sr"], {"sr": FILE}, WALK),  # a prefix of a read path is not its directory
    ],
)
def test_to_refresh(changed: list[str], now: dict[str, os.stat_result], expected: list[int] | None) -> None:
    rules = IgnoreRules.parse("build\n")
    memo = _memo(SELECTED, CONTEXT)
    got = to_refresh(changed, rules, memo, now.get)
    assert (None if got is None else [at for at, _ in got]) == expected


def test_an_unread_directory_that_cannot_be_read_now_needs_the_walk() -> None:
    memo = _memo(SELECTED, CONTEXT)
    assert to_refresh(["docs"], IgnoreRules(), memo, {"docs": DIR}.get, lambda rel: True) == []
    assert to_refresh(["docs"], IgnoreRules(), memo, {"docs": DIR}.get, lambda rel: False) is None
    unread_file = {"README.md": FILE}.get
    assert to_refresh(["README.md"], IgnoreRules(), memo, unread_file, lambda rel: False) == []


def test_a_fifo_path_needs_the_walk() -> None:
    memo = _memo(["d"], ["d"])._replace(fifos=["d/p"])
    assert to_refresh(["d/p"], IgnoreRules.parse("d\n!d/p\n"), memo, lambda rel: None) is None
    assert to_refresh(["d"], IgnoreRules.parse("d\n!d/p\n"), memo, lambda rel: None) is None


def test_a_symlink_the_target_reads_changed_needs_the_walk() -> None:
    memo = Memo("i:1", [["link", "symlink", "0o777", "target"]], b"link", [], [], [], [])
    assert to_refresh(["link"], IgnoreRules(), memo, lambda rel: _stat(stat.S_IFLNK | 0o777)) is None


def test_a_path_that_sorts_between_a_directory_and_its_contents_is_not_inside_it() -> None:
    # "src-old" sorts after "src" and before "src/app.py" ("-" < "/"): not below "src"
    memo = _memo(["src-old/x.py"], ["src-old", "src-old/x.py"])
    assert to_refresh(["src"], IgnoreRules(), memo, lambda rel: DIR) is None  # new path
    memo = _memo(["src/app.py"], ["src", "src/app.py", "src-old"])
    assert to_refresh(["src-old"], IgnoreRules(), memo, lambda rel: DIR) == []


def test_memo_key_changes_with_any_part() -> None:
    base = ("Dockerfile", [("build", False)], ["COPY . /app"])
    assert memo_key(base) == memo_key(list(base))  # the material's parts, not its container, count
    assert memo_key(base) != memo_key(("Dockerfile", [("build", True)], ["COPY . /app"]))
    assert memo_key(base) != memo_key(("Dockerfile", [("build", False)], ["COPY . /srv"]))
