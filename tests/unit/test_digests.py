"""File digests and the stat cache: what is hashed again, and what is not."""

from __future__ import annotations

import marshal
import os
import sys
import time
from pathlib import Path

import pytest
from blake3 import blake3

from stagecache.key import files as key_files
from stagecache.key.files import file_digest
from stagecache.speed import digests
from stagecache.speed.digests import DigestCache
from tests.fakes import Images

OLD = time.time() - 3600  # settled: older than the racy window


def _write(path: Path, data: bytes, mtime: float = OLD) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths ``file_digest`` is called on, in order.

    A file's ctime cannot be set back, so every file a test writes is "just changed": the racy window
    shrinks to nothing here, and the racy test widens it again.
    """
    monkeypatch.setattr(digests, "RACY_NS", 0)
    calls: list[str] = []
    real = key_files.file_digest

    def counting(path: str, size: int = -1) -> str:
        calls.append(os.path.basename(path))
        return real(path, size)

    monkeypatch.setattr(digests, "file_digest", counting)
    return calls


def _files(root: Path) -> list[tuple[str, bytes | None]]:
    rels = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    return [(rel, key_files.signature(os.lstat(root / rel))) for rel in rels]


@pytest.mark.parametrize("size", [0, 1, 4096, key_files.THREADED + 1, key_files.WHOLE + 3])
def test_file_digest_is_blake3_of_the_content(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    (tmp_path / "f").write_bytes(data)
    assert file_digest(str(tmp_path / "f"), size) == blake3(data).hexdigest()
    assert file_digest(str(tmp_path / "f")) == blake3(data).hexdigest()


def test_file_digest_reads_what_is_there_when_the_size_is_stale(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"grown since its stat")
    assert file_digest(str(tmp_path / "f"), 5) == blake3(b"grown since its stat").hexdigest()
    assert file_digest(str(tmp_path / "f"), 500) == blake3(b"grown since its stat").hexdigest()


def test_a_repeat_reads_no_file(tmp_path: Path, hashed: list[str]) -> None:
    root, store = tmp_path / "ctx", tmp_path / "cache" / "d.marshal"
    for i in range(5):
        _write(root / f"d{i % 2}" / f"f{i}", f"content {i}".encode())
    first = DigestCache.open(root, store)
    before = first.digests(_files(root))
    first.save()
    assert len(hashed) == 5
    again = DigestCache.open(root, store).digests(_files(root))
    assert again == before
    assert len(hashed) == 5  # nothing read the second time
    assert before["d0/f0"] == blake3(b"content 0").hexdigest()


def test_only_the_changed_file_is_hashed_again(tmp_path: Path, hashed: list[str]) -> None:
    root, store = tmp_path / "ctx", tmp_path / "d.marshal"
    for i in range(5):
        _write(root / f"f{i}", f"content {i}".encode())
    cache = DigestCache.open(root, store)
    cache.digests(_files(root))
    cache.save()
    hashed.clear()
    _write(root / "f3", b"same size!")  # the size is unchanged: the mtime and ctime tell
    after = DigestCache.open(root, store).digests(_files(root))
    assert hashed == ["f3"]
    assert after["f3"] == blake3(b"same size!").hexdigest()


def test_a_racy_file_is_not_remembered(
    tmp_path: Path, hashed: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, store = tmp_path / "ctx", tmp_path / "d.marshal"
    _write(root / "settled", b"old")
    time.sleep(1.0)
    _write(root / "racy", b"just written", mtime=time.time())
    monkeypatch.setattr(digests, "RACY_NS", 500_000_000)  # "settled" is 1 s old, "racy" just written
    cache = DigestCache.open(root, store)
    cache.digests(_files(root))
    cache.save()
    hashed.clear()
    DigestCache.open(root, store).digests(_files(root))
    assert hashed == ["racy"]  # it could change again within its mtime's tick: looked at every time


def test_two_selections_of_one_context(tmp_path: Path, hashed: list[str]) -> None:
    root, store = tmp_path / "ctx", tmp_path / "d.marshal"
    for name in ("a", "b", "c"):
        _write(root / name, name.encode())
    files = _files(root)
    cache = DigestCache.open(root, store)
    cache.digests(files[:2])
    cache.digests(files[1:])
    cache.save()
    hashed.clear()
    reopened = DigestCache.open(root, store)
    assert set(reopened.digests(files[:2])) == {"a", "b"}
    assert set(reopened.digests(files[1:])) == {"b", "c"}
    assert set(reopened.digests(files)) == {"a", "b", "c"}  # a new selection: per-file entries
    assert hashed == []


def test_a_damaged_or_foreign_cache_file_is_ignored(tmp_path: Path) -> None:
    root, store = tmp_path / "ctx", tmp_path / "d.marshal"
    _write(root / "f", b"data")
    store.write_bytes(b"\x00not marshal at all")
    assert DigestCache.open(root, store).digests(_files(root)) == {"f": blake3(b"data").hexdigest()}
    misshapen = (digests._HEADER, str(root), b"\x00junk", {"selection": 5, "other": (b"", "not a list")})
    store.write_bytes(marshal.dumps(misshapen))  # this version's header, someone else's contents
    assert DigestCache.open(root, store).digests(_files(root)) == {"f": blake3(b"data").hexdigest()}
    cache = DigestCache.open(root, store)
    cache.digests(_files(root))
    cache.save()
    other_root = tmp_path / "elsewhere"
    _write(other_root / "f", b"other")
    # the same relative path under another root: the cache is per root, never shared
    assert DigestCache.open(other_root, store).digests(_files(other_root)) == {
        "f": blake3(b"other").hexdigest()
    }


def test_an_unwritable_cache_is_only_a_slower_run(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    _write(root / "f", b"data")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("")
    cache = DigestCache.open(root, blocker / "d.marshal")
    cache.digests(_files(root))
    cache.save()  # no exception
    assert not (blocker / "d.marshal").exists()


def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    root = tmp_path / "ctx"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9.txt")
    _write(root / name, b"latin-1 name")
    found = DigestCache.open(root, tmp_path / "d.marshal").digests(_files(root))
    assert found == {name: blake3(b"latin-1 name").hexdigest()}


def _tree(root: Path, count: int) -> list[tuple[str, int]]:
    items = []
    for i in range(count):
        data = os.urandom(i * 997 % 50_000)
        _write(root / f"d{i % 3}" / f"f{i}", data)
        items.append((f"d{i % 3}/f{i}", len(data)))
    return items


@pytest.mark.parametrize("helpers", ["1", "3"])
def test_helper_processes_hash_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, helpers: str
) -> None:
    items = _tree(tmp_path, 40)
    prefix = str(tmp_path) + os.sep
    monkeypatch.setenv("STAGECACHE_HASH_WORKERS", "0")
    alone = digests.hash_files(prefix, items)
    monkeypatch.setenv("STAGECACHE_HASH_WORKERS", helpers)
    monkeypatch.setattr(digests, "HELPER_S", 0.0)  # else this little work all stays here
    started: list[int] = []
    real_start = digests._start_helper

    def counting(prefix: str, share: list[tuple[str, int]]) -> object:
        started.append(len(share))
        return real_start(prefix, share)

    monkeypatch.setattr(digests, "_start_helper", counting)
    assert digests.hash_files(prefix, items) == alone
    assert len(started) == int(helpers)
    assert all(started)  # each helper got files to hash
    assert alone == [blake3((tmp_path / rel).read_bytes()).hexdigest() for rel, _ in items]


def test_a_failing_helper_leaves_its_share_to_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _tree(tmp_path, 10)
    prefix = str(tmp_path) + os.sep
    monkeypatch.setenv("STAGECACHE_HASH_WORKERS", "1")
    monkeypatch.setattr(digests, "HELPER_S", 0.0)
    monkeypatch.setattr(sys, "executable", "/bin/false")  # starts, reads nothing, exits 1
    assert digests.hash_files(prefix, items) == [
        blake3((tmp_path / rel).read_bytes()).hexdigest() for rel, _ in items
    ]


def test_a_file_gone_before_a_helper_reads_it_is_reported_as_without_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = _tree(tmp_path, 10)
    (tmp_path / items[3][0]).unlink()
    monkeypatch.setenv("STAGECACHE_HASH_WORKERS", "2")
    monkeypatch.setattr(digests, "HELPER_S", 0.0)
    with pytest.raises(FileNotFoundError) as raised:
        digests.hash_files(str(tmp_path) + os.sep, items)
    assert raised.value.filename == str(tmp_path / items[3][0])


def test_small_work_starts_no_helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STAGECACHE_HASH_WORKERS", raising=False)
    assert digests._helpers_for([("a", 100)] * 10) == 0
    many = digests._helpers_for([("a", 10_000_000)] * 100)  # a second of work
    cores = len(os.sched_getaffinity(0))
    assert many == min(cores - 1, 7)


def test_deleted_files_are_forgotten(tmp_path: Path, hashed: list[str]) -> None:
    """Through the key's own path: the cache keeps only files the context still has."""
    from stagecache.key.inputs import collect
    from stagecache.key.spec import TargetSpec

    root, store = tmp_path / "ctx", tmp_path / "d.marshal"
    for name in ("keep.py", "gone.py", "also.py"):
        _write(root / name, name.encode())
    (root / "Dockerfile").write_text("FROM scratch\nCOPY . /app/\n")
    spec = TargetSpec("t", root, root / "Dockerfile")

    def key_once() -> None:
        cache = DigestCache.open(root, store)
        collect(spec, images=Images(lambda ref: "scratch"), platform="linux/amd64", digests=cache)
        cache.save()

    key_once()
    (root / "gone.py").unlink()
    _write(root / "also.py", b"changed")
    key_once()
    assert sorted(DigestCache.open(root, store)._unpacked()) == ["Dockerfile", "also.py", "keep.py"]


@pytest.mark.parametrize("helpers", [1, 2, 3])
def test_shares_split_the_work_in_order_with_the_late_start_counted(helpers: int) -> None:
    items = [(f"f{i}", (i * 7919) % 300_000) for i in range(5000)]
    shares = digests._shares(items, helpers)
    assert len(shares) == helpers + 1
    assert [i for share in shares for i in share] == list(range(len(items)))  # every item once, in order

    def work(share: list[int]) -> float:
        return sum(digests.PER_FILE_S + items[i][1] * digests.PER_BYTE_S for i in share)

    finish = [work(shares[0])] + [digests.HELPER_S + work(share) for share in shares[1:]]
    assert max(finish) - min(finish) < 0.01  # each process done within 10 ms of the others


def test_a_large_file_first_leaves_no_helper_with_a_crumb() -> None:
    items = [("big", 10**9)] + [(f"empty{i}", 0) for i in range(5)]
    shares = digests._shares(items, 3)
    assert [i for share in shares for i in share] == list(range(6))
    assert sum(1 for share in shares[1:] if share) <= 1  # the empty files go to one helper, not three
