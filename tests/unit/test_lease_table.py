"""The lease table: compare-and-swap on real LMDB files, named after the boot."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from zencache import Cache
from zencache.executors import leases
from zencache.storage import lease_table
from zencache.storage.lease_table import LeaseTable, boot_id
from zencache.storage.records import StepRecord


def holder(pid: int, expires: float) -> dict[str, object]:
    return {"host": "here", "pid": pid, "expires": expires}


@pytest.fixture
def table(tmp_path: Path):
    opened = LeaseTable(tmp_path / "leases")
    yield opened
    opened.close()


def test_a_free_lease_is_taken_and_a_held_one_reports_its_holder(table: LeaseTable) -> None:
    now = time.time()
    assert table.try_lease("k", holder(1, now + 60), now) is None
    assert table.try_lease("k", holder(2, now + 60), now) == holder(1, now + 60)
    assert table.holder("k") == holder(1, now + 60)
    assert table.keys() == ["k"]


def test_an_expired_lease_or_the_named_dead_holder_is_replaced(table: LeaseTable) -> None:
    now = time.time()
    table.put("old", holder(1, now - 1))
    assert table.try_lease("old", holder(2, now + 60), now) is None
    assert table.holder("old") == holder(2, now + 60)

    table.put("dead", holder(3, now + 60))
    assert table.try_lease("dead", holder(4, now + 60), now, replace=holder(99, now)) is not None
    assert table.try_lease("dead", holder(4, now + 60), now, replace=holder(3, now + 60)) is None
    assert table.holder("dead") == holder(4, now + 60)


def test_release_deletes_only_the_named_leases(table: LeaseTable) -> None:
    now = time.time()
    for key in ("a", "b", "c"):
        table.put(key, holder(1, now + 60))
    table.release(["a", "c", "never-taken"])
    assert table.keys() == ["b"]
    table.release([])
    assert table.keys() == ["b"]


@pytest.mark.skipif(boot_id() is None, reason="no boot id on this system")
def test_the_file_is_named_after_the_boot_and_earlier_boots_files_are_removed(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "leases"
    folder.mkdir()
    stale = folder / "0000-earlier-boot.mdb"
    stale.write_bytes(b"torn by a power cut")
    (folder / "0000-earlier-boot.mdb-lock").write_bytes(b"")
    booted_long_ago = time.time() - 10 * 365 * 86400
    for path in folder.iterdir():
        os.utime(path, (booted_long_ago, booted_long_ago))
    recent = folder / "other-host.mdb"  # changed since this boot: not ours to judge
    recent.write_bytes(b"")

    table = LeaseTable(folder)
    try:
        assert table.path == folder / f"{boot_id()}.mdb"
        assert sorted(p.name for p in folder.iterdir()) == sorted(
            [f"{boot_id()}.mdb", f"{boot_id()}.mdb-lock", "other-host.mdb"]
        )
    finally:
        table.close()


def test_without_a_boot_id_the_table_is_synced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lease_table, "_BOOT_ID", str(tmp_path / "no-such-file"))
    table = LeaseTable(tmp_path / "leases")
    try:
        assert table.path.name == "synced.mdb"
        assert table.env.flags()["sync"] is True
        now = time.time()
        assert table.try_lease("k", holder(1, now + 60), now) is None
    finally:
        table.close()


def test_a_lease_is_visible_to_another_process(tmp_path: Path, python: object) -> None:
    table = LeaseTable(tmp_path / "leases")
    try:
        now = time.time()
        table.put("k", holder(os.getpid(), now + 60))
        code = (
            "import sys, time\n"
            "from zencache.storage.lease_table import LeaseTable\n"
            "t = LeaseTable(sys.argv[1])\n"
            "print(t.try_lease('k', {'pid': 0, 'expires': time.time() + 9}, time.time()))\n"
        )
        out = python.run(code, str(tmp_path / "leases"))  # type: ignore[attr-defined]
        assert out.returncode == 0, out.stderr
        assert f"'pid': {os.getpid()}" in out.stdout
    finally:
        table.close()


def test_a_waiter_calls_back_while_it_polls_and_takes_the_holders_entry(tmp_path: Path) -> None:
    """The runner passes its committer's check as the callback: a driver waiting on
    another process's lease still learns at once that a commit of its own failed."""
    cache = Cache(tmp_path / "cache")
    try:
        key = "e" * 32
        live = {
            "host": leases._HOST,
            "pidns": leases._PID_NS,
            "pid": os.getpid(),
            "started": leases._STARTED,
            "expires": time.time() + 60,
        }
        cache.leases.put(key, live)  # a live process on this machine: waited for
        record = StepRecord(
            key=key,
            step="m:f",
            name="f",
            pipeline="p",
            output_ids=("1" * 32,),
            output_names=("output",),
            fingerprint="f" * 32,
            code_parts={},
            params={},
            inputs={},
            materializers={"output": "zencache.builtin@1"},
        )
        calls: list[int] = []

        def while_waiting() -> None:
            calls.append(1)
            if len(calls) == 3:  # the holder commits its entry meanwhile
                cache.index.write([("steps", key.encode(), record.encode())])

        ids = leases.Leases(cache, "run").acquire(key, while_waiting=while_waiting)
        assert ids == ("1" * 32,)
        assert len(calls) == 3
        assert cache.leases.holder(key) == live  # the holder releases its own lease
    finally:
        cache.close()
