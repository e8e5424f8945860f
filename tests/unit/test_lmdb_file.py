"""lmdb_file: an LMDB data file read page by page with plain reads. Checked against
LMDB itself on real files (branch pages, overflow values, deletions, both commits),
then on damaged copies: a damaged page is skipped with its subtree, never followed."""

from __future__ import annotations

import os
import random
import struct
from pathlib import Path

import lmdb
import pytest

from zencache.storage.lmdb_file import P_BRANCH, DataFile, Walk, free_list_problem


def _fill(path: Path, seed: int = 1) -> None:
    env = lmdb.open(str(path), max_dbs=8, map_size=256 << 20)
    rng = random.Random(seed)
    dbs = [env.open_db(name) for name in (b"one", b"two", b"three")]
    for _ in range(12):
        with env.begin(write=True) as txn:
            for _ in range(300):
                size = rng.choice([10, 100, 3000, 9000])  # the last two overflow
                txn.put(rng.randbytes(rng.randint(4, 40)), rng.randbytes(size), db=rng.choice(dbs))
        with env.begin(write=True) as txn:  # deletions free pages: a free-page list
            keys = list(txn.cursor(db=dbs[0]).iternext(values=False))
            for key in rng.sample(keys, len(keys) // 4):
                txn.delete(key, db=dbs[0])
    env.close()


def _lmdb_entries(path: Path) -> dict[bytes, list[tuple[bytes, bytes]]]:
    env = lmdb.open(str(path), readonly=True, lock=False, max_dbs=8)
    found = {}
    with env.begin() as txn:
        for name in list(txn.cursor().iternext(values=False)):
            db = env.open_db(name, txn=txn, create=False)
            found[name] = list(txn.cursor(db=db).iternext())
    env.close()
    return found


def _walk(data: DataFile, meta_at: int = 0) -> tuple[dict[bytes, list[tuple[bytes, bytes]]], Walk]:
    meta, walk = data.metas[meta_at], Walk()
    roots = data.databases(meta, walk)
    return {
        n: [(k, v) for k, v, _ in data.entries(r, meta, walk)] for n, (r, _) in roots.items()
    }, walk


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lmdb")
    _fill(path)
    return path


def test_every_entry_lmdb_reads_is_read_the_same_page_by_page(filled: Path) -> None:
    with DataFile.open(filled / "data.mdb") as data:  # type: ignore[union-attr]
        assert data.metas[0].txnid > data.metas[1].txnid
        found, walk = _walk(data)
        assert not walk.bad_pages and not walk.bad_entries
        assert found == _lmdb_entries(filled)
        assert sum(map(len, found.values())) > 2000
        previous, walk = _walk(data, 1)  # the commit before: sound too, and different
        assert not walk.bad_pages and previous != found
        assert free_list_problem(data, data.metas[0]) == ""
        assert data.short_by() == 0


def _pages(data: DataFile) -> tuple[list[int], list[int]]:
    """Branch and leaf pages of table b"one" in the newest commit."""
    meta = data.metas[0]
    root = data.databases(meta, Walk())[b"one"][0]
    branches, leaves, stack = [], [], [root]
    while stack:
        pgno = stack.pop()
        page = data.page(pgno, meta)
        assert page is not None
        if not page[10] & P_BRANCH:
            leaves.append(pgno)
            continue
        branches.append(pgno)
        count = (struct.unpack_from("<H", page, 12)[0] - 16) // 2
        for offset in struct.unpack_from(f"<{count}H", page, 16):
            lo, hi, flags = struct.unpack_from("<HHH", page, offset)
            stack.append(lo | hi << 16 | flags << 32)
    return branches, leaves


@pytest.mark.parametrize("damage", ["zeroed", "random", "another leaf", "one child"])
def test_a_damaged_page_is_skipped_with_its_subtree_and_everything_else_is_read(
    filled: Path, tmp_path: Path, damage: str
) -> None:
    for name in ("data.mdb",):
        (tmp_path / name).write_bytes((filled / name).read_bytes())
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        branches, leaves = _pages(data)
        sound, _ = _walk(data)
    target = branches[0] if damage == "one child" else leaves[len(leaves) // 2]
    with open(tmp_path / "data.mdb", "r+b") as fh:
        fh.seek(target * 4096)
        page = bytearray(fh.read(4096))
        if damage == "zeroed":
            page = bytearray(4096)
        elif damage == "random":
            page = bytearray(random.Random(2).randbytes(4096))
        elif damage == "another leaf":  # a misdirected write: a sound page, wrong place
            fh.seek(leaves[0] * 4096)
            page = bytearray(fh.read(4096))
        else:
            page[12:14] = (18).to_bytes(2, "little")
        fh.seek(target * 4096)
        fh.write(page)
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        found, walk = _walk(data)
    assert target in walk.bad_pages
    assert found[b"two"] == sound[b"two"] and found[b"three"] == sound[b"three"]
    lost = set(sound[b"one"]) - set(found[b"one"])
    assert set(found[b"one"]) <= set(sound[b"one"])  # nothing made up
    if damage == "one child":
        assert found[b"one"] == []  # the root: nothing under it is reachable
    else:
        assert 0 < len(lost) < len(sound[b"one"]) / 4  # one leaf's entries


def test_a_free_page_list_that_overruns_its_record_is_named(filled: Path, tmp_path: Path) -> None:
    (tmp_path / "data.mdb").write_bytes((filled / "data.mdb").read_bytes())
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        meta = data.metas[0]
        records = list(data.entries(meta.free_root, meta, Walk(), integers=True))
        assert records
        leaf = data.page(meta.free_root, meta)
        assert leaf is not None and not leaf[10] & P_BRANCH
    # The first record's count, made larger than the record: a writer would read past it.
    offset = struct.unpack_from("<H", leaf, 16)[0]
    _, _, flags, ksize = struct.unpack_from("<HHHH", leaf, offset)
    assert not flags & 1, "an inline record"
    with open(tmp_path / "data.mdb", "r+b") as fh:
        fh.seek(meta.free_root * 4096 + offset + 8 + ksize)
        fh.write(struct.pack("<Q", 1 << 40))
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        assert "counts more pages than it holds" in free_list_problem(data, data.metas[0])


def test_files_that_are_no_lmdb_file_are_not_opened(tmp_path: Path) -> None:
    assert DataFile.open(tmp_path / "missing") is None
    (tmp_path / "empty").write_bytes(b"")
    assert DataFile.open(tmp_path / "empty") is None
    (tmp_path / "text").write_bytes(b"hello" * 2000)
    assert DataFile.open(tmp_path / "text") is None
    os.symlink(tmp_path / "text", tmp_path / "link")
    assert DataFile.open(tmp_path / "link") is None  # links are not followed


def test_leaves_cut_off_by_a_damaged_branch_are_found_among_the_loose_pages(
    filled: Path, tmp_path: Path
) -> None:
    (tmp_path / "data.mdb").write_bytes((filled / "data.mdb").read_bytes())
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        branches, _ = _pages(data)
        sound, _ = _walk(data)
    with open(tmp_path / "data.mdb", "r+b") as fh:
        fh.seek(branches[0] * 4096)
        fh.write(bytes(4096))
    with DataFile.open(tmp_path / "data.mdb") as data:  # type: ignore[union-attr]
        found, walk = _walk(data)
        assert found[b"one"] == [] and branches[0] in walk.bad_pages
        loose = {pair for page in data.loose_leaves(data.metas[0], walk.reached) for pair in page}
    # Every entry is on some loose leaf (with stale copies of older pages, of every
    # table: the caller places a page by what it holds).
    assert set(sound[b"one"]) <= loose
