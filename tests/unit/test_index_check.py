"""index_check.vouch: an index is read through in a child only when it changed since it
was last known sound, and the state a process's own commits leave is known sound.
Real indexes and real child processes; the spy only counts the children."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from zencache.errors import CorruptIndexError
from zencache.storage import index_check
from zencache.storage.index import Index


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, ...]]:
    """The child processes index_check starts (they still run)."""
    started: list[tuple[str, ...]] = []
    real = index_check._child

    def counting(code: str, *args: str) -> Any:
        started.append(args)
        return real(code, *args)

    monkeypatch.setattr(index_check, "_child", counting)
    return started


def _filled(path: Path, entries: int = 400) -> None:
    index = Index(path)
    try:
        index.write([("latest", f"p/s{i}".encode(), b"k" * 40) for i in range(entries)])
    finally:
        index.close()


def test_an_index_left_by_this_process_is_not_read_through_again(
    tmp_path: Path, children: list[tuple[str, ...]]
) -> None:
    path = tmp_path / "index.lmdb"
    _filled(path)  # a new file: nothing to check; its own commits are recorded sound
    assert children == []
    for _ in range(3):
        Index(path).close()
    assert children == []
    index = Index(path)
    index.write([("latest", b"p/more", b"x")])
    index.close()
    Index(path).close()
    assert children == []


def test_a_file_changed_by_something_else_is_read_through_once(
    tmp_path: Path, children: list[tuple[str, ...]]
) -> None:
    path = tmp_path / "index.lmdb"
    _filled(path)
    data = path / "data.mdb"
    data.write_bytes(data.read_bytes())  # the same bytes, written by someone else
    Index(path).close()
    assert len(children) == 1
    Index(path).close()
    assert len(children) == 1  # found sound, and recorded so


def test_another_process_committing_last_leaves_the_check_to_the_next_open(
    tmp_path: Path, children: list[tuple[str, ...]], python: Any
) -> None:
    path = tmp_path / "index.lmdb"
    _filled(path)
    index = Index(path)
    index.write([("latest", b"p/mine", b"x")])
    code = (
        "import sys\nfrom zencache.storage.index import Index\n"
        "i = Index(sys.argv[1])\ni.write([('latest', b'p/theirs', b'y')])\nimport os\nos._exit(0)"
    )
    done = python.run(code, str(path))
    assert done.returncode == 0, done.stderr
    index.close()  # its last commit is not the file's last: not recorded
    Index(path).close()
    assert len(children) == 1


def test_damage_that_would_abort_lmdb_here_is_an_error_naming_the_way_out(
    tmp_path: Path, children: list[tuple[str, ...]]
) -> None:
    """The root branch of a table made to look like it has one child: LMDB asserts
    on it (abort) on the first lookup. The check finds it in its child instead."""
    from zencache.storage.lmdb_file import DataFile, Walk

    path = tmp_path / "index.lmdb"
    _filled(path, 2000)
    with DataFile.open(path / "data.mdb") as data:  # type: ignore[union-attr]
        root = data.databases(data.metas[0], Walk())[b"latest"][0]
        page = data.page(root, data.metas[0])
        assert page is not None and page[10] & 1, "a branch page"
    with open(path / "data.mdb", "r+b") as fh:
        fh.seek(root * 4096 + 12)
        fh.write((18).to_bytes(2, "little"))
    with pytest.raises(CorruptIndexError) as caught:
        Index(path)
    text = str(caught.value)
    assert "aborted" in text and "verify --repair" in text and "\n" not in text
    with pytest.raises(CorruptIndexError):
        Index(path)  # never recorded sound
