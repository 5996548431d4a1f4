"""The build context: ignore-file reading, Docker's matching rules, and the walk BuildKit does.

The expected answers were checked against BuildKit on the engine this project targets (see
``tests/integration/test_context_buildkit.py``, which compares ``walk()`` with real images).
"""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest

from stagecache.errors import ConfigError
from stagecache.key.ignore import IgnoreRules, find_ignore_file
from stagecache.key.patterns import compile_pattern
from stagecache.key.walk import Entry, walk

# (ignore-file text, path relative to the context, excluded?)
EXCLUDED: list[tuple[str, str, bool]] = [
    # `*` and `?` stay inside one path component
    ("*.env", "x.env", True),
    ("*.env", "app/x.env", False),
    ("app/*.md", "app/x.md", True),
    ("app/*.md", "app/core/x.md", False),
    ("?.py", "a.py", True),
    ("?.py", "ab.py", False),
    ("*", "anything", True),
    ("*", "a/b/c", True),  # through the parent
    ("*/*", "a", False),
    ("*/*", "a/b", True),
    # `**`
    ("**/__pycache__", "__pycache__", True),
    ("**/__pycache__", "__pycache__/x.pyc", True),
    ("**/__pycache__", "a/b/__pycache__/x.pyc", True),
    ("**/__pycache__", "a/__pycache__x", False),
    ("a/**/b", "a/b", True),
    ("a/**/b", "a/x/b", True),
    ("a/**/b", "a/x/y/b", True),
    ("a/**/b", "a/xb", False),
    ("a/**/b", "b", False),
    ("a/**", "a", False),
    ("a/**", "a/x", True),
    ("**", "a/b", True),
    ("**/*.md", "x.md", True),
    ("**/*.md", "a/b/x.md", True),
    ("**.pyc", "a/b/x.pyc", True),  # a leading `**` without other wildcards is a suffix test
    ("**foo", "barfoo", True),
    ("a**b", "ab", True),
    ("a**b", "ax/b", True),
    ("a**b", "axb", False),  # `**` not followed by `/` still needs one
    ("a**", "abc/d", True),
    # a pattern that matches a directory excludes what is below it
    ("docs", "docs", True),
    ("docs", "docs/a/b.md", True),
    ("docs", "docsx", False),
    ("docs", "x/docs", False),
    # cleaning: leading `/` and `./`, trailing `/`, `.` and `..` segments
    ("/data", "data", True),
    ("/data", "x/data", False),
    ("./bin", "bin/tool", True),
    ("bin/", "bin", True),
    ("//a//b/", "a/b", True),
    ("a/./b/../c", "a/c", True),
    ("a/./b/../c", "a/b", False),
    ("../x", "x", False),
    ("/", "x", False),
    (".", "x", False),
    ("./", "x", False),
    # comments, blank lines, whitespace
    ("#x", "#x", False),
    ("  #x", "#x", True),  # `#` only starts a comment in the first column
    ("\\#x", "#x", True),
    ("\n\n   \n# c\nx\n", "x", True),
    ("  x  \t", "x", True),
    ("\u00a0x\u3000", "x", True),  # Go trims Unicode spaces too
    ("\x1cx", "x", False),  # ... but not the ASCII separators Python would strip
    ("\ufeffx", "x", True),  # a UTF-8 byte-order mark on the first line
    ("a\r\nb\r\n", "b", True),
    ("sp ace.txt   ", "sp ace.txt", True),
    # classes and escapes
    ("[abc].txt", "a.txt", True),
    ("[abc].txt", "d.txt", False),
    ("[a-c]1", "b1", True),
    ("[^a].txt", "b.txt", True),
    ("[^a].txt", "a.txt", False),
    ("[!a]", "!", True),  # `!` does not negate a class; `^` does
    ("[!a]", "b", False),
    ("a[^x]b", "a/b", True),  # a negated class can match `/`
    ("\\*.txt", "*.txt", True),
    ("\\*.txt", "a.txt", False),
    ("[\\]]", "]", True),
    ("]", "]", True),
    ("a.b", "axb", False),
    ("a+(b)|{c}$", "a+(b)|{c}$", True),
    ("file\\d", "file5", True),  # Docker reads `\d` as a regular-expression digit
    ("file\\d", "filed", False),
    ("top\\n", "top", False),
    ("a\\wb", "a_b", True),
    ("a\\Wb", "a_b", False),
    ("a\\sb", "a b", True),
    ("a\\Db", "a5b", False),
    ("[*]", "*", False),  # inside `[...]`, Docker still rewrites `*` ...
    ("[*]", "]", True),  # ... into `[^/]*`, leaving the `]` literal
    ("a^b", "a^b", True),  # a pattern without wildcards is compared as a string ...
    ("a^b*", "a^bc", False),  # ... otherwise an unescaped `^` is a regular-expression anchor
    # last match wins; `!` re-includes
    ("*.md\n!README.md", "README.md", False),
    ("*.md\n!README.md", "x.md", True),
    ("*.md\n!README.md\nREADME.md", "README.md", True),
    ("docs\n!docs/keep.md", "docs", True),
    ("docs\n!docs/keep.md", "docs/keep.md", False),
    ("docs\n!docs/keep.md", "docs/keep.md.d/y", True),
    ("docs\n!docs/keep.md", "docs/other.md", True),
    ("*\n!app\napp/core\n!app/core/util.py", "app/core/util.py", False),
    ("*\n!app\napp/core\n!app/core/util.py", "app/core/x.py", True),
    ("*\n!app\napp/core\n!app/core/util.py", "app/main.py", False),
    ("a\n!a/b", "a/b/c", False),  # re-including a directory re-includes its subtree
    ("a/b\n!a", "a/b", True),  # the walker's rule: `!a` is never tried on a/b, a/b stays out
    ("a/b\n!a", "a/c", False),
    ("!  /docs/x  \ndocs", "docs/x", True),
    ("docs\n!  /docs/x  ", "docs/x", False),
    ("**/*.txt\n!**/keep.txt", "a/b/keep.txt", False),
    # nothing to do
    ("", "x", False),
    ("x", "", False),
    ("x", ".", False),
]


@pytest.mark.parametrize(("text", "path", "expected"), EXCLUDED)
def test_excluded(text: str, path: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).excluded(path) is expected


@pytest.mark.parametrize(
    ("text", "path", "expected"),
    [("docs", "./docs/x", True), ("docs", "/docs/x", True), ("docs", "docs/x/", True), ("a/b", "a//b", True)],
)
def test_excluded_normalises_the_path(text: str, path: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).excluded(path) is expected


@pytest.mark.parametrize(
    ("text", "directory", "expected"),
    [
        ("docs", "docs", False),  # no exceptions at all
        ("docs\n!docs/keep.md", "docs", True),
        ("docs\n!docs/keep.md", "other", False),
        ("docs\n!docs/keep.md", "doc", False),
        ("docs\n!docs/**", "docs", True),
        ("docs\n!docs/*", "docs", True),
        ("a\n!a/b/c", "a", True),
        ("a\n!a/b/c", "a/b", True),
        ("a\n!a/b/c", "a/x", False),
        ("a\n!a/b/c", "a/b/c", True),
        ("a\n!*.md", "a", True),  # any wildcard in an exception: every excluded directory is walked
        ("a\n!a/**/x", "anything", True),
    ],
)
def test_may_reinclude_below(text: str, directory: str, expected: bool) -> None:
    assert IgnoreRules.parse(text).may_reinclude_below(directory) is expected


@pytest.mark.parametrize(
    ("text", "path", "walk_excludes", "open_excludes"),
    [
        # the walk carries results down; the open-time test retries every pattern on every parent
        ("*/*\n!**/*.txt\n**/*.md", "z/x/y.md/f.txt", False, True),
        ("*/*\n!**/*.txt\n**/*.md", "z/x/g.txt", False, False),
        ("a/b\n!a", "a/b", True, False),
        ("docs\n!docs/keep.md", "docs/keep.md", False, False),
        ("docs\n!docs/keep.md", "docs/x", True, True),
        ("*.md\na", "a/x.md", True, True),  # without exceptions the two always agree
        ("", "a", False, False),
    ],
)
def test_excluded_on_open(text: str, path: str, walk_excludes: bool, open_excludes: bool) -> None:
    rules = IgnoreRules.parse(text)
    assert rules.excluded(path) is walk_excludes
    assert rules.excluded_on_open(path) is open_excludes


def test_parse_keeps_docker_form_and_lines() -> None:
    rules = IgnoreRules.parse("# c\n\n/a/\n! ./b//c\n", source="x/.dockerignore")
    assert [(p.text, p.exception, p.line) for p in rules.patterns] == [("a", False, 3), ("b/c", True, 4)]
    assert rules.source == "x/.dockerignore"
    assert rules.patterns[0].matches("a")
    assert not rules.patterns[0].matches("a/b")


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("[", "unterminated"),
        ("ab[", "unterminated"),
        ("a[bc", "unterminated"),
        ("[]", "empty"),
        ("[^]", "empty"),
        ("[a-]", "`-`"),
        ("[-a]", "`-`"),
        ("x\\", "trailing"),
        ("!", "`!`"),
        ("!   ", "`!`"),
        ("!/", "`!`"),
        ("a\\e", "\\e"),
        ("a\\x41", "\\x"),
        ("\\pL", "\\p"),
        ("[\\D]", "\\D"),
        ("[[:alpha:]]", "POSIX"),
        ("[z-a]", "reversed"),
    ],
)
def test_bad_pattern_names_source_and_line(line: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        IgnoreRules.parse(f"# first\nok\n{line}\n", source="build/Dockerfile.dockerignore")
    message = str(info.value)
    assert message.startswith("build/Dockerfile.dockerignore:3: ")
    assert reason in message
    assert "\n" not in message


def test_load(tmp_path: Path) -> None:
    assert IgnoreRules.load(None) == IgnoreRules()
    assert not IgnoreRules.load(None).excluded("x")
    path = tmp_path / ".dockerignore"
    path.write_bytes(b"\xef\xbb\xbfa\r\nname-\xff\n")
    rules = IgnoreRules.load(path)
    assert rules.source == str(path)
    assert rules.excluded("a")
    assert rules.excluded(os.fsdecode(b"name-\xff"))
    path.write_text("ok\n[\n")
    with pytest.raises(ConfigError, match=rf"^{path}:2: "):
        IgnoreRules.load(path)


def test_find_ignore_file(tmp_path: Path) -> None:
    context = tmp_path / "ctx"
    build = tmp_path / "build"
    context.mkdir()
    build.mkdir()
    dockerfile = build / "Dockerfile"
    assert find_ignore_file(context, dockerfile) is None
    (context / ".dockerignore").write_text("x\n")
    assert find_ignore_file(context, dockerfile) == context / ".dockerignore"
    (build / "Dockerfile.dockerignore").write_text("")  # even empty, it wins
    assert find_ignore_file(context, dockerfile) == build / "Dockerfile.dockerignore"
    assert find_ignore_file(context, build / "prod.Dockerfile") == context / ".dockerignore"
    (build / "prod.Dockerfile.dockerignore").write_text("y\n")
    assert find_ignore_file(context, build / "prod.Dockerfile") == build / "prod.Dockerfile.dockerignore"
    inside = context / "Dockerfile"
    assert find_ignore_file(context, inside) == context / ".dockerignore"
    (context / "Dockerfile.dockerignore").write_text("")
    assert find_ignore_file(context, inside) == context / "Dockerfile.dockerignore"


def test_find_ignore_file_ignores_a_directory(tmp_path: Path) -> None:
    (tmp_path / ".dockerignore").mkdir()
    assert find_ignore_file(tmp_path, tmp_path / "Dockerfile") is None


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("*.py", "a.py", True),
        ("*.py", "a/b.py", False),
        ("src/*.py", "src/a.py", True),
        ("?", "a", True),
        ("?", "/", False),
        ("[^a]", "b", True),
        ("[^a]", "a", False),
        ("[a-c]x", "bx", True),
        ("\\*", "*", True),
        ("\\*", "a", False),
        ("a.b", "axb", False),
        ("[z-a]", "m", False),  # Go accepts a reversed range; it matches nothing
        ("[^z-a]", "m", True),
        ("[\\]a]", "]", True),
    ],
)
def test_compile_pattern(pattern: str, path: str, expected: bool) -> None:
    assert (compile_pattern(pattern).fullmatch(path) is not None) is expected


def test_compile_pattern_rejects_bad_syntax() -> None:
    with pytest.raises(ConfigError, match="unterminated"):
        compile_pattern("src/[ab")


# --- walk ----------------------------------------------------------------------------------------------


def _tree(root: Path, files: dict[str, int]) -> None:
    for rel, mode in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(rel)
        path.chmod(mode)


def _paths(entries: list[Entry]) -> list[str]:
    return [e.path for e in entries]


def test_walk_records_kinds_modes_sizes_and_links(tmp_path: Path) -> None:
    _tree(tmp_path, {"app/main.py": 0o755, "app/data.bin": 0o600, "bin/suid": 0o4755})
    (tmp_path / "empty").mkdir()
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch").chmod(0o1777)
    (tmp_path / "link").symlink_to("app/main.py")
    (tmp_path / "outside").symlink_to("../../etc/passwd")
    (tmp_path / "dirlink").symlink_to("app")
    entries = {e.path: e for e in walk(tmp_path, IgnoreRules())}
    assert entries["app/main.py"] == Entry("app/main.py", "file", 0o755, len("app/main.py"))
    assert entries["app/data.bin"].mode == 0o600
    assert entries["bin/suid"].mode == 0o4755
    assert entries["empty"] == Entry("empty", "dir", 0o755 & ~_umask(), 0)
    assert entries["scratch"].mode == 0o1777
    assert entries["link"] == Entry("link", "symlink", 0o777, len("app/main.py"), "app/main.py")
    assert entries["outside"].link_target == "../../etc/passwd"
    assert entries["dirlink"].kind == "symlink"
    assert not any(p.startswith("dirlink/") for p in entries)  # never followed


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_walk_is_sorted_and_relative(tmp_path: Path) -> None:
    _tree(tmp_path, {"b/x": 0o644, "a-c": 0o644, "a/b": 0o644, ".h": 0o644})
    paths = _paths(walk(tmp_path, IgnoreRules()))
    assert paths == sorted(paths) == [".h", "a", "a-c", "a/b", "b", "b/x"]


def test_walk_keeps_directories_the_ignore_file_emptied(tmp_path: Path) -> None:
    _tree(tmp_path, {"logs/a.log": 0o644, "logs/b.log": 0o644, "src/x.py": 0o644})
    (tmp_path / "src/empty").mkdir()
    paths = _paths(walk(tmp_path, IgnoreRules.parse("*.log\nlogs/*.log\n")))
    assert paths == ["logs", "src", "src/empty", "src/x.py"]


def test_walk_does_not_enter_an_excluded_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _tree(tmp_path, {".git/objects/ab/cd": 0o644, "node_modules/p/i.js": 0o644, "src/x.py": 0o644})
    opened: list[str] = []
    real = os.open

    def spy(path: str, flags: int, mode: int = 0o777, *, dir_fd: int | None = None) -> int:
        if flags & os.O_DIRECTORY:
            opened.append(path if dir_fd is not None else os.path.relpath(path, tmp_path))
        return real(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(os, "open", spy)
    paths = _paths(walk(tmp_path, IgnoreRules.parse(".git\nnode_modules\n!src/x.py\n")))
    assert paths == ["src", "src/x.py"]
    assert sorted(opened) == [".", "src"]


def test_walk_enters_an_excluded_directory_for_an_exception(tmp_path: Path) -> None:
    _tree(tmp_path, {"docs/keep.md": 0o644, "docs/x.md": 0o644, "docs/keep.md.d/y": 0o644, "a/b/c/d": 0o644})
    (tmp_path / "docs/sub").mkdir()
    rules = IgnoreRules.parse("docs\n!docs/keep.md\na\n!a/b/c/d\n")
    assert _paths(walk(tmp_path, rules)) == ["a", "a/b", "a/b/c", "a/b/c/d", "docs", "docs/keep.md"]


def test_walk_leaves_out_an_excluded_directory_nothing_comes_back_from(tmp_path: Path) -> None:
    _tree(tmp_path, {"docs/x.md": 0o644, "top": 0o644})
    assert _paths(walk(tmp_path, IgnoreRules.parse("docs\n!docs/missing\n"))) == ["top"]


def test_walk_sends_a_reincluded_directory_whole(tmp_path: Path) -> None:
    _tree(tmp_path, {"a/b/c": 0o644, "a/x": 0o644})
    (tmp_path / "a/b/empty").mkdir()
    assert _paths(walk(tmp_path, IgnoreRules.parse("a\n!a/b\n"))) == ["a", "a/b", "a/b/c", "a/b/empty"]


def test_walk_special_files(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    os.mknod(tmp_path / "run/app.sock", stat.S_IFSOCK | 0o751)
    (tmp_path / "pipes").mkdir()
    os.mkfifo(tmp_path / "pipes/p")
    (tmp_path / "gone").mkdir()
    os.mkfifo(tmp_path / "gone/p")
    entries = walk(tmp_path, IgnoreRules.parse("gone\n!gone/p\n"))
    assert entries == [
        Entry("gone", "dir", 0o755 & ~_umask(), 0),  # the FIFO is dropped but brings its parent
        Entry("pipes", "dir", 0o755 & ~_umask(), 0),
        Entry("run", "dir", 0o755 & ~_umask(), 0),
        Entry("run/app.sock", "special", 0o751, 0),
    ]


def test_walk_flags_files_buildkit_lists_but_will_not_read(tmp_path: Path) -> None:
    _tree(tmp_path, {"z/x/y.md/f.txt": 0o644, "z/x/g.txt": 0o644, "top.txt": 0o644})
    entries = {e.path: e for e in walk(tmp_path, IgnoreRules.parse("*/*\n!**/*.txt\n**/*.md\n"))}
    assert sorted(entries) == ["top.txt", "z", "z/x", "z/x/g.txt", "z/x/y.md", "z/x/y.md/f.txt"]
    assert entries["z/x/y.md/f.txt"] == Entry("z/x/y.md/f.txt", "file", 0o644, 14, content_refused=True)
    assert [p for p, e in entries.items() if e.content_refused] == ["z/x/y.md/f.txt"]
    fixed = IgnoreRules.parse("*/*\n!**/*.txt\n**/*.md\n!z/x/y.md/f.txt\n")
    assert not any(e.content_refused for e in walk(tmp_path, fixed))


def test_walk_needs_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not a directory"):
        walk(tmp_path / "missing", IgnoreRules())
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="not a directory"):
        walk(tmp_path / "file", IgnoreRules())


def test_walk_agrees_with_excluded(tmp_path: Path) -> None:
    _tree(tmp_path, {f"{d}/{s}/{f}": 0o644 for d in "abc" for s in ("x", "y.md") for f in ("k.md", "z.txt")})
    rules = IgnoreRules.parse("*/*.md\n!a/**/k.md\nc\n!c/x\n")
    walked = {e.path: e for e in walk(tmp_path, rules)}
    for path in {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}:
        assert (path in walked) is (not rules.excluded(path)), path
        if path in walked:
            assert walked[path].content_refused is rules.excluded_on_open(path), path


def test_walk_of_a_large_tree(tmp_path: Path) -> None:
    """Every file of 20,000, less those excluded (its speed is benchmarks/key_speed.py's business)."""
    for d in range(200):
        sub = tmp_path / f"pkg{d % 20}" / f"mod{d}"
        sub.mkdir(parents=True)
        for f in range(100):
            (sub / f"f{f}.py").touch()
    rules = IgnoreRules.parse("**/__pycache__\n*.pyc\n.git\nnode_modules\npkg1/**/f1*.py\n!pkg1/mod1/f1.py\n")
    entries = walk(tmp_path, rules)
    # pkg1 holds mod1, mod21, ... mod181: 10 directories with f1.py and f10-f19.py each; !pkg1/mod1/f1.py
    assert sum(e.kind == "file" for e in entries) == 20_000 - 10 * 11 + 1
    assert sum(e.kind == "dir" for e in entries) == 20 + 200


VOCABULARY = [
    "*", "**", "*.py", "**/*.md", "**/__pycache__", "a", "a/", "/a/b", "a/*", "a/**", "a/**/c", "**/c",
    "b?", "[ab]", "[^a]*", "**.txt", "a**", ".*", "../x", "!a/b", "!**/*.txt", "!c", "!/a/c", "!a/**",
    "!b?/x.py", "!*.md", "!a/b/c", "!__pycache__", "b/**", "!b", "*/*", "!*/*/*",
]  # fmt: skip
NAMES = ["a", "b", "c", "ab", "b1", "x.py", "y.md", "z.txt", ".h", "__pycache__"]


def _random_tree(root: Path, rng: random.Random, depth: int = 0) -> None:
    for name in rng.sample(NAMES, rng.randint(2, 6)):
        path = root / name
        if depth < 3 and rng.random() < 0.45:
            path.mkdir()
            _random_tree(path, rng, depth + 1)
        else:
            path.write_text(name)


@pytest.mark.parametrize("seed", range(40))
def test_walk_is_consistent_with_the_path_tests(tmp_path: Path, seed: int) -> None:
    """Files are walked iff not excluded; a directory iff not excluded or something below it is sent.

    This also shows that skipping excluded directories (``may_reinclude_below``) loses nothing.
    """
    rng = random.Random(seed)
    _random_tree(tmp_path, rng)
    rules = IgnoreRules.parse("\n".join(rng.choice(VOCABULARY) for _ in range(rng.randint(2, 8))))
    walked = {e.path: e for e in walk(tmp_path, rules)}
    for item in tmp_path.rglob("*"):
        path = item.relative_to(tmp_path).as_posix()
        if item.is_dir():
            has_sent_child = any(p.startswith(path + "/") for p in walked)
            assert (path in walked) is (not rules.excluded(path) or has_sent_child), path
        else:
            assert (path in walked) is (not rules.excluded(path)), path
            if path in walked:
                assert walked[path].content_refused is rules.excluded_on_open(path), path


def test_walk_of_a_deep_tree(tmp_path: Path) -> None:
    """One Python frame per directory level, as before the walk used directory descriptors."""
    deep = tmp_path.joinpath(*["d"] * 600)
    deep.mkdir(parents=True)
    (deep / "f").write_text("x")
    entries = walk(tmp_path, IgnoreRules())
    assert len(entries) == 601
    assert entries[-1].path == "/".join(["d"] * 600) + "/f"
