"""inputs/: path digests (files, Merkle trees, limits, special files), the stat memo's
table in the index, environment reads found in bytecode, and the step options."""

from __future__ import annotations

import os
import threading
from os import environ, getenv
from pathlib import Path

import lmdb
import pytest

from zencache import step
from zencache.errors import PipelineDefinitionError
from zencache.fingerprint.envreads import env_reads
from zencache.inputs.external import env_external, path_external
from zencache.inputs.trees import (
    MAX_ENTRIES_SETTING,
    InputPathError,
    StatMemo,
    content_of,
    decode_entries,
    encode_entries,
    file_digest,
)
from zencache.storage.index import FORMAT, Index

# --- digests ---------------------------------------------------------------------------------------


def test_file_and_tree_digests_stay_the_same(tmp_path: Path) -> None:
    """Pinned: a change is a cache miss for every step that reads a file."""
    (tmp_path / "a.txt").write_bytes(b"hello")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"\x00" * 10)
    (tmp_path / "link").symlink_to("a.txt")
    assert file_digest(str(tmp_path / "a.txt"))[0] == "c6a78ced8518549ad3430c6db8d374f2"
    tree = content_of(str(tmp_path), StatMemo(None))
    assert tree.kind == "dir" and tree.count == 2 and tree.size == 15
    assert [e.path for e in tree.entries] == ["a.txt", "link", "sub", "sub/b.bin"]
    assert tree.digest == "e03f0dd767dd6820dd2643a73c4d2fc4"


def test_a_large_file_hashes_the_same_in_one_thread_or_two(tmp_path: Path) -> None:
    data = os.urandom(3 * (8 << 20) + 123)
    path = tmp_path / "big.bin"
    path.write_bytes(data)
    assert file_digest(str(path))[0] == file_digest(str(path), parallel=False)[0]


def test_tree_digests_see_names_kinds_and_content(tmp_path: Path) -> None:
    def digest() -> str:
        return content_of(str(tmp_path), StatMemo(None)).digest

    (tmp_path / "a").write_text("x")
    first = digest()
    (tmp_path / "a").rename(tmp_path / "b")
    renamed = digest()
    assert renamed != first
    (tmp_path / "b").unlink()
    (tmp_path / "b").mkdir()
    assert digest() not in (first, renamed)
    (tmp_path / "b").rmdir()
    (tmp_path / "b").write_text("x")
    assert digest() == renamed


def test_folder_listings_round_trip() -> None:
    from zencache.inputs.trees import Entry

    entries = (Entry("a", "file", 3, "d" * 32), Entry("b\udcff", "link", 0, "../x"))
    assert decode_entries(encode_entries(entries)) == entries


def test_a_fifo_is_refused_without_hanging(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    result: list[BaseException] = []

    def attempt() -> None:
        try:
            content_of(str(fifo), StatMemo(None))
        except BaseException as exc:
            result.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert not thread.is_alive(), "hashing a FIFO hung"
    assert isinstance(result[0], InputPathError)
    assert "FIFO" in str(result[0])
    with pytest.raises(InputPathError, match="FIFO"):
        content_of(str(tmp_path), StatMemo(None))  # inside a folder too


def test_a_device_is_refused() -> None:
    with pytest.raises(InputPathError, match="device"):
        content_of("/dev/null", StatMemo(None))


def test_a_folder_with_too_many_entries_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(6):
        (tmp_path / str(i)).write_text("x")
    monkeypatch.setenv(MAX_ENTRIES_SETTING, "5")
    with pytest.raises(InputPathError, match=f"more than 5 entries.*{MAX_ENTRIES_SETTING}"):
        content_of(str(tmp_path), StatMemo(None))
    monkeypatch.setenv(MAX_ENTRIES_SETTING, "lots")
    with pytest.raises(InputPathError, match="whole number"):
        content_of(str(tmp_path), StatMemo(None))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_an_unreadable_file_names_the_parameter_and_the_path(tmp_path: Path) -> None:
    from zencache.inputs.external import step_externals

    secret = tmp_path / "secret.csv"
    secret.write_text("x")
    secret.chmod(0)

    @step
    def load(path: Path) -> str:
        return ""

    with pytest.raises(InputPathError) as caught:
        step_externals(load, {"path": secret}, (), StatMemo(None), str(tmp_path))
    assert "'path'" in str(caught.value) and str(secret) in str(caught.value)


def test_missing_paths_differ_by_path_and_dangling_links_by_target(tmp_path: Path) -> None:
    memo = StatMemo(None)
    one = path_external("p", "a.csv", None, memo, str(tmp_path))
    two = path_external("p", "b.csv", None, memo, str(tmp_path))
    assert one.digest != two.digest
    (tmp_path / "dangling").symlink_to("nowhere")
    link = path_external("p", "dangling", None, memo, str(tmp_path))
    assert link.record["kind"] == "link" and link.record["target"] == "nowhere"


def test_env_digests_distinguish_unset_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ZC_UNIT_VAR", raising=False)
    unset = env_external("ZC_UNIT_VAR")
    monkeypatch.setenv("ZC_UNIT_VAR", "")
    empty = env_external("ZC_UNIT_VAR")
    assert unset.digest != empty.digest
    assert unset.record["value"] is None and empty.record["value"] == ""


# --- the stat memo's table ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("version", "tables"),
    [
        (3, ("meta", "steps", "hits", "artifacts", "runs", "envs", "latest")),
        (4, ("meta", "steps", "hits", "artifacts", "runs", "envs", "latest", "pins", "used")),
    ],
)
def test_an_older_index_gains_the_memo_and_listing_tables(
    tmp_path: Path, version: int, tables: tuple[str, ...]
) -> None:
    path = tmp_path / "index.lmdb"
    path.mkdir()
    env = lmdb.open(str(path), max_dbs=12)
    with env.begin(write=True) as txn:  # what that format created
        for name in tables:
            env.open_db(name.encode(), txn=txn)
        txn.put(b"format", f"zencache-index/{version}".encode(), db=env.open_db(b"meta", txn=txn))
    env.close()
    index = Index(path)
    try:
        assert index.get("meta", b"format") == FORMAT
        index.write([("stats", b"k", b"v" * 16), ("trees", b"t", b"x")])
        assert index.get_many("stats", [b"k", b"other"]) == [b"v" * 16, None]
    finally:
        index.close()


# --- environment reads in bytecode --------------------------------------------------------------------


def test_literal_environment_reads_are_found_in_every_spelling() -> None:
    def reads() -> tuple:
        import os as local_os
        from os import environ as local_environ
        from os import getenv as local_getenv
        from os import sep, unsetenv  # several names in one statement

        del sep, unsetenv

        return (
            os.environ["A"],
            os.environ.get("B", "x"),
            os.getenv("C"),
            "D" in os.environ,
            environ.get("E"),
            getenv("F"),
            local_os.environ.get("G"),
            local_getenv("H"),
            [os.environ.get("I") for _ in range(1)],
            local_environ["J"],
        )

    names, notes = env_reads(reads)
    assert names == set("ABCDEFGHIJ")
    assert notes == []


def test_computed_names_and_whole_environment_reads_are_notes() -> None:
    def computed(name: str) -> tuple:
        return os.environ[name], os.getenv(name), dict(os.environ), list(os.environ.items())

    names, notes = env_reads(computed)
    assert names == set()
    assert len(notes) == 4
    assert all("env=" in n for n in notes)


def test_writes_are_neither_reads_nor_notes() -> None:
    def writes(name: str) -> None:
        os.environ["A"] = "1"
        os.environ[name] = "2"
        del os.environ["B"]
        os.environ.pop("C", None)
        os.environ.update({"D": "4"})

    assert env_reads(writes) == (set(), [])


def test_closures_over_getenv_are_followed() -> None:
    reader = os.getenv

    def uses() -> str | None:
        return reader("CLOSED")

    assert env_reads(uses)[0] == {"CLOSED"}


# --- step options ---------------------------------------------------------------------------------------


def test_env_and_by_name_are_checked_when_the_step_is_defined() -> None:
    with pytest.raises(PipelineDefinitionError, match="trailing comma"):
        step(env="MODE")(lambda n: n)  # type: ignore[arg-type]
    with pytest.raises(PipelineDefinitionError, match="not an environment variable"):
        step(env=("A=B",))(lambda n: n)

    def fn(out: Path) -> None:
        return None

    with pytest.raises(PipelineDefinitionError, match="by_name= names"):
        step(by_name=("nope",))(fn)


SETTING_NAME = "ZC_FROM_A_CONSTANT"


def test_a_module_constant_holding_the_name_counts_as_literal() -> None:
    def reads() -> str | None:
        return os.environ.get(SETTING_NAME)

    assert env_reads(reads) == ({"ZC_FROM_A_CONSTANT"}, [])
