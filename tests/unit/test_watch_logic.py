"""Which changes a watcher reports leave a memo's file rows true: pure logic, no watcher."""

from __future__ import annotations

import pytest

from stagecache.context import IgnoreRules
from stagecache.watch import Memo, memo_key, unaffected, unreached


def _memo(selected: list[str], context: list[str]) -> Memo:
    rows = [[path, "file", "0o644", "d"] for path in sorted(selected)]
    return Memo("i:1", rows, "\0".join(sorted(context)).encode(), [], [])


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


@pytest.mark.parametrize(
    ("changed", "exists", "expected"),
    [
        ([], set(), True),
        (["src/app.py"], {"src/app.py"}, False),  # a file the target reads
        (["src"], {"src"}, False),  # its directory (renamed away, say)
        (["README.md"], {"README.md"}, True),  # in the context, not read by the target
        (["docs"], set(), True),  # an unread directory removed
        (["src/new.py"], {"src/new.py"}, False),  # new: a directory source may pick it up
        (["notes.txt"], {"notes.txt"}, False),  # new anywhere: a wildcard may pick it up
        ([".app.py.swp"], set(), True),  # made and removed since the memo
        (["build/out.o"], {"build/out.o"}, True),  # ignored
        (["README.md", "src/util.py"], {"README.md", "src/util.py"}, False),
        (["sr"], {"sr"}, False),  # a prefix of a read path is not its directory
    ],
)
def test_unaffected(changed: list[str], exists: set[str], expected: bool) -> None:
    rules = IgnoreRules.parse("build\n")
    memo = _memo(SELECTED, CONTEXT)
    assert unaffected(changed, rules, memo, exists.__contains__) is expected


def test_a_path_that_sorts_between_a_directory_and_its_contents_is_not_inside_it() -> None:
    # "src-old" sorts after "src" and before "src/app.py" ("-" < "/"): not below "src"
    memo = _memo(["src-old/x.py"], ["src-old", "src-old/x.py"])
    assert unaffected(["src"], IgnoreRules(), memo, lambda rel: True) is False  # new path
    memo = _memo(["src/app.py"], ["src", "src/app.py", "src-old"])
    assert unaffected(["src-old"], IgnoreRules(), memo, lambda rel: True) is True


def test_memo_key_changes_with_any_part() -> None:
    base = ("Dockerfile", [("build", False)], ["COPY . /app"])
    assert memo_key(base) == memo_key(tuple(base))
    assert memo_key(base) != memo_key(("Dockerfile", [("build", True)], ["COPY . /app"]))
    assert memo_key(base) != memo_key(("Dockerfile", [("build", False)], ["COPY . /srv"]))
