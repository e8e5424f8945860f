"""The LMDB index on real files: records round trip, the hit path, a map that grows
(also when another process grew it), the format check, refusing damaged or foreign
files, and several processes writing at once."""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path

import lmdb
import pytest

from zencache.errors import CacheError, CacheVersionError, CorruptIndexError, StorageFullError
from zencache.hashing import digest_bytes
from zencache.storage.index import DATABASES, FORMAT, MAP_SIZE, Index, Update, View
from zencache.storage.records import (
    ArtifactRecord,
    EnvRecord,
    FileEntry,
    RunRecord,
    StepRecord,
    StepRun,
)


def cid(text: str) -> str:
    return digest_bytes(text.encode())


def step_record(key: str, outputs: int = 2) -> StepRecord:
    names = tuple(f"out{i}" for i in range(outputs))
    return StepRecord(
        key=key,
        step="pkg.mod:trainer",
        name="trainer",
        pipeline="pkg.mod:training",
        output_ids=tuple(cid(f"{key}/{n}") for n in names),
        output_names=names,
        fingerprint=cid("code"),
        code_parts={"pkg.mod:trainer": cid("a"), "pkg.mod:helper": cid("b")},
        params={"gamma": {"hash": cid("0.01"), "repr": "0.01"}},
        inputs={"X_train": cid("X"), "y_train": cid("y")},
        materializers={n: "zencache.numpy@1" for n in names},
        untracked=("pkg.mod:STATE",),
        run_id="20240101T000000-abc",
        created=1700000000.25,
        duration=1.5,
    )


def artifact_record() -> ArtifactRecord:
    return ArtifactRecord(
        content_id=cid("artifact"),
        materializer="zencache.numpy@1",
        type_name="numpy:ndarray",
        files={
            "meta.json": FileEntry(size=12, inline=b'{"shape":[]}'),
            "data.bin": FileEntry(size=300_000, chunks=(cid("c0"), cid("c1"), cid("c2"))),
            "empty": FileEntry(size=0, inline=b""),
        },
        created=1700000001.0,
    )


def run_record(run_id: str = "20240101T000000-abc") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        pipeline="pkg.mod:training",
        params={"gamma": "0.01"},
        status="completed",
        started=1700000000.0,
        finished=1700000003.5,
        env_id=cid("env"),
        steps=(
            StepRun("importer", "pkg.mod:importer", cid("k1"), "cached", 0.001, {"X": cid("X")}),
            StepRun("trainer", "pkg.mod:trainer", cid("k2"), "failed", 2.0, {}, "ValueError: x"),
        ),
        output=("trainer.output",),
        output_is_tuple=False,
        target="pkg.mod:training",
    )


def env_record() -> EnvRecord:
    return EnvRecord(
        env_id=cid("env"),
        python="3.11.7",
        implementation="CPython",
        platform="Linux-6.1-x86_64",
        machine="x86_64",
        distributions={"numpy": "2.0.0", "scikit-learn": "1.5.0"},
        extra={"cuda": None, "flags": [1, 2]},
    )


# --- records through the index ----------------------------------------------------------


def test_records_round_trip_through_the_index(index: Index) -> None:
    step, artifact, run, env = (
        step_record(cid("key")),
        artifact_record(),
        run_record(),
        env_record(),
    )
    index.write(
        [
            ("steps", step.key.encode(), step.encode()),
            ("artifacts", artifact.content_id.encode(), artifact.encode()),
            ("runs", run.run_id.encode(), run.encode()),
            ("envs", env.env_id.encode(), env.encode()),
            ("latest", b"pkg.mod:training/trainer", step.key.encode()),
        ]
    )
    assert index.get_step(step.key) == step
    assert index.get_artifact(artifact.content_id) == artifact
    assert index.get_run(run.run_id) == run
    assert index.get_env(env.env_id) == env
    assert index.latest_key("pkg.mod:training", "trainer") == step.key
    assert list(index.iter_steps()) == [step]
    assert [ArtifactRecord.decode(v) for _, v in index.items("artifacts")] == [artifact]
    assert [RunRecord.decode(v) for _, v in index.items("runs")] == [run]

    got = index.get_artifact(artifact.content_id)
    assert got is not None
    assert got.files["meta.json"].inline == b'{"shape":[]}'
    assert got.files["data.bin"].chunks == (cid("c0"), cid("c1"), cid("c2"))
    assert got.object_ids() == {cid("c0"), cid("c1"), cid("c2")}
    assert got.size == 300_012


def test_records_survive_closing_and_reopening(tmp_path: Path) -> None:
    step = step_record(cid("key"))
    index = Index(tmp_path / "index.lmdb")
    index.write([("steps", step.key.encode(), step.encode())])
    index.close()
    index = Index(tmp_path / "index.lmdb")
    try:
        assert index.get_step(step.key) == step
    finally:
        index.close()


def test_absent_entries_are_none(index: Index) -> None:
    assert index.get_step(cid("nope")) is None
    assert index.step_output_ids(cid("nope")) is None
    assert index.get_artifact(cid("nope")) is None
    assert index.get_run("nope") is None
    assert index.get_env("nope") is None
    assert index.latest_key("p", "s") is None
    assert index.get("steps", b"nope") is None


@pytest.mark.parametrize("outputs", [0, 1, 4])
def test_step_output_ids_matches_the_record(index: Index, outputs: int) -> None:
    step = step_record(cid(f"key{outputs}"), outputs=outputs)
    index.write([("steps", step.key.encode(), step.encode())])
    assert index.step_output_ids(step.key) == step.output_ids


def test_write_puts_and_deletes_in_one_transaction(index: Index) -> None:
    index.write([("latest", b"a", b"1"), ("latest", b"b", b"2")])
    index.write([("latest", b"a", None), ("latest", b"c", b"3")])
    assert index.items("latest") == [(b"b", b"2"), (b"c", b"3")]
    assert index.count("latest") == 2
    assert index.keys("latest") == [b"b", b"c"]


def test_a_failing_update_writes_nothing(index: Index) -> None:
    index.write([("latest", b"kept", b"1")])

    def half_then_fail(update: Update) -> None:
        update.put("latest", b"half", b"written")
        assert update.delete("latest", b"kept")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        index.update(half_then_fail)
    assert index.items("latest") == [(b"kept", b"1")]


def test_an_update_reads_its_own_writes_and_commits_them_together(index: Index) -> None:
    index.write([("latest", b"p/a", b"1"), ("latest", b"p/b", b"2"), ("runs", b"r", b"x")])

    def move(update: Update) -> list[tuple[bytes, bytes]]:
        assert update.delete("latest", b"p/a")
        assert not update.delete("latest", b"p/missing")
        update.put("latest", b"p/c", b"3")
        assert update.get("latest", b"p/c") == b"3"
        assert update.count("latest") == 2
        assert update.keys("runs") == [b"r"]
        return update.items("latest", b"p/")

    assert index.update(move) == [(b"p/b", b"2"), (b"p/c", b"3")]
    assert index.items("latest") == [(b"p/b", b"2"), (b"p/c", b"3")]


def test_a_view_is_one_snapshot_across_databases(index: Index) -> None:
    index.write([("latest", b"a", b"1"), ("runs", b"r", b"x")])

    def read_then_write_elsewhere(view: View) -> tuple[int, int]:
        first = view.count("latest")
        index.write([("latest", b"b", b"2")])  # another writer commits meanwhile
        return first, len(view.items("latest"))

    assert index.view(read_then_write_elsewhere) == (1, 1)
    assert index.count("latest") == 2


def test_clearing_the_steps_clears_their_hit_rows(index: Index) -> None:
    record = step_record("c" * 32)
    index.write([("steps", record.key.encode(), record.encode()), ("latest", b"p/s", b"k")])
    index.update(lambda update: update.clear("steps"))
    assert index.count("steps") == 0
    assert index.step_output_ids(record.key) is None
    assert index.keys("latest") == [b"p/s"]  # other databases untouched


def test_write_run_writes_the_record_a_new_environment_and_changed_latest_keys(
    index: Index,
) -> None:
    env = EnvRecord("e1", "3.11", "cpython", "linux", "x86_64", {})
    run = RunRecord(
        run_id="0001",
        pipeline="p",
        params={},
        status="ok",
        started=1.0,
        finished=2.0,
        env_id="e1",
        steps=(),
    )
    index.write([("latest", b"p/kept", b"k1"), ("latest", b"q/other", b"k9")])
    index.write_run(run, env, {"kept": "k1", "new": "k2"})
    assert index.get_run("0001") == run
    assert index.get_env("e1") == env
    assert index.items("latest", b"p/") == [(b"p/kept", b"k1"), (b"p/new", b"k2")]
    assert index.get("latest", b"q/other") == b"k9"
    # An environment the index holds is not rewritten.
    other = EnvRecord("e1", "3.12", "cpython", "linux", "x86_64", {})
    index.write_run(run, other, {})
    assert index.get_env("e1") == env


def test_items_with_a_prefix(index: Index) -> None:
    keys = [b"a", b"a/1", b"a/2", b"ab", b"b/1", b"c"]
    index.write([("latest", k, k.upper()) for k in keys])
    assert [k for k, _ in index.items("latest", b"a/")] == [b"a/1", b"a/2"]
    assert [k for k, _ in index.items("latest", b"a")] == [b"a", b"a/1", b"a/2", b"ab"]
    assert index.items("latest", b"b/") == [(b"b/1", b"B/1")]
    assert index.items("latest", b"d") == []  # past the last key
    assert index.items("latest", b"aa") == []  # between keys
    assert [k for k, _ in index.items("latest")] == keys


def test_last_is_the_greatest_key(index: Index) -> None:
    assert index.last("runs") is None
    run_ids = ["20240102T000000-b", "20240101T000000-a", "20240103T000000-c"]
    index.write([("runs", r.encode(), run_record(r).encode()) for r in run_ids])
    last = index.last("runs")
    assert last is not None
    assert last[0] == b"20240103T000000-c"
    assert RunRecord.decode(last[1]).run_id == "20240103T000000-c"


# --- the map: opened once, large; the file grows as written ----------------------------------


def test_the_map_is_opened_once_at_full_size_and_the_file_grows_as_written(
    tmp_path: Path,
) -> None:
    index = Index(tmp_path / "index.lmdb")
    try:
        assert index.env.info()["map_size"] == MAP_SIZE
        assert (tmp_path / "index.lmdb" / "data.mdb").stat().st_size < 1 << 20
        values = {f"k{i:04d}".encode(): os.urandom(40_000) for i in range(100)}  # 4 MB
        for key, value in values.items():
            index.write([("artifacts", key, value)])
        index.write([("runs", b"one-big-value", b"x" * 3_000_000)])
        assert index.env.info()["map_size"] == MAP_SIZE  # never resized
        size = (tmp_path / "index.lmdb" / "data.mdb").stat().st_size
        assert 7_000_000 < size < 64 << 20
        assert dict(index.items("artifacts")) == values
    finally:
        index.close()


def test_a_full_map_is_one_line_and_loses_nothing(tmp_path: Path) -> None:
    path = tmp_path / "index.lmdb"
    index = Index(path, map_size=64 * 1024)
    written = {}
    try:
        with pytest.raises(StorageFullError) as info:
            for i in range(100):
                key = f"k{i:04d}".encode()
                index.write([("artifacts", key, bytes([i]) * 5_000)])
                written[key] = bytes([i]) * 5_000
        assert str(path) in str(info.value) and "ulimit" in str(info.value)
        assert dict(index.items("artifacts")) == written  # the failed one aborted alone
    finally:
        index.close()
    with contextlib.closing(Index(path)) as reopened:  # the full map: goes on
        reopened.write([("artifacts", b"after", os.urandom(500_000))])
        assert len(reopened.items("artifacts")) == len(written) + 1


_GROWER = """
import os, sys
from zencache.storage.index import Index

index = Index(sys.argv[1])
for i in range(100):
    index.write([("artifacts", b"child-%04d" % i, bytes([i % 256]) * 50_000)])
index.close()
print("ok")
"""


@pytest.mark.parametrize("hit_path", [False, True])
def test_a_map_another_process_outgrew_is_one_line(tmp_path: Path, python, hit_path) -> None:
    """Only a process that mapped less than MAP_SIZE (an address-space limit) can meet
    an index another process wrote past its map: one line, nothing lost, and the
    next process (with the full map) reads everything."""
    path = tmp_path / "index.lmdb"
    step = step_record(cid("k"))
    index = Index(path, map_size=64 * 1024)
    try:
        index.write([("steps", step.key.encode(), step.encode())])
        done = python.run(_GROWER, str(path))
        assert done.returncode == 0, done.stderr
        with pytest.raises(StorageFullError, match="ulimit"):
            if hit_path:
                index.step_output_ids(step.key)
            else:
                index.count("artifacts")
    finally:
        index.close()
    with contextlib.closing(Index(path)) as reopened:
        assert reopened.count("artifacts") == 100
        assert reopened.step_output_ids(step.key) == step.output_ids


_LIMITED = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
from zencache.storage.index import Index

index = Index(sys.argv[1])
index.write([("latest", b"under-a-limit", b"1")])
print(json.dumps({"map_size": index.env.info()["map_size"]}))
"""


def test_an_address_space_limit_opens_a_smaller_map(tmp_path: Path, python) -> None:
    done = python.run(_LIMITED, str(tmp_path / "index.lmdb"))
    assert done.returncode == 0, done.stderr
    mapped = json.loads(done.stdout)["map_size"]
    assert 64 << 20 <= mapped < 4 << 30
    with contextlib.closing(Index(tmp_path / "index.lmdb")) as index:
        assert index.get("latest", b"under-a-limit") == b"1"


# --- format version, damaged and foreign files ------------------------------------------------


def test_a_new_index_records_its_format(index: Index) -> None:
    assert index.get("meta", b"format") == FORMAT


def test_an_index_of_another_format_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cache" / "index.lmdb"
    index = Index(path)
    index.write([("meta", b"format", b"zencache-index/99")])
    index.close()
    with pytest.raises(CacheVersionError) as info:
        Index(path)
    message = str(info.value)
    assert "zencache-index/99" in message
    assert FORMAT.decode() in message
    assert str(tmp_path / "cache") in message
    assert "--cache-dir" in message
    assert isinstance(info.value, CacheError)
    assert info.value.exit_code == 2
    # The refused environment was closed: this process can open the folder again.
    env = lmdb.open(str(path), max_dbs=len(DATABASES) + 1)
    try:
        with env.begin(write=True) as txn:
            txn.put(b"format", FORMAT, db=env.open_db(b"meta", txn=txn))
    finally:
        env.close()
    Index(path).close()


def test_a_garbage_data_file_is_a_corrupt_index(tmp_path: Path) -> None:
    path = tmp_path / "index.lmdb"
    path.mkdir()
    (path / "data.mdb").write_bytes(os.urandom(64 * 1024))
    with pytest.raises(CorruptIndexError) as info:
        Index(path)
    assert str(path) in str(info.value)
    assert "delete" in str(info.value)
    assert info.value.exit_code == 2


def test_a_foreign_lmdb_environment_is_a_corrupt_index(tmp_path: Path) -> None:
    path = tmp_path / "index.lmdb"
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        txn.put(b"their-key", b"their value")
    env.close()
    with pytest.raises(CorruptIndexError, match="another program") as info:
        Index(path)
    assert "their-key" in str(info.value)
    # Nothing of ours was written into their file.
    env = lmdb.open(str(path), max_dbs=len(DATABASES) + 1)
    try:
        with env.begin() as txn:
            assert list(txn.cursor()) == [(b"their-key", b"their value")]
    finally:
        env.close()


# --- several processes at once -------------------------------------------------------------

_WRITER = """
import json, sys, time, os
from zencache.storage.index import Index
from zencache.storage.records import decode_output_ids

path, go, worker = sys.argv[1], sys.argv[2], int(sys.argv[3])
index = Index(path)
while not os.path.exists(go):
    time.sleep(0.001)
for i in range(150):
    index.write([
        ("steps", b"own-%d-%04d" % (worker, i), bytes([worker]) * 3000),
        ("steps", b"shared-%04d" % i, b"same value from everyone" * 100),
        ("latest", b"race-%04d" % (i % 10), b"worker-%d" % worker),
    ])
    if i % 10 == 0:
        assert index.get("steps", b"own-%d-%04d" % (worker, i)) == bytes([worker]) * 3000
index.close()
print("ok")
"""


def test_four_processes_writing_at_once(tmp_path: Path, python) -> None:
    path, go = tmp_path / "index.lmdb", tmp_path / "go"
    Index(path).close()  # created once, so no process races on the format entry
    workers = [python.popen(_WRITER, str(path), str(go), str(w)) for w in range(4)]
    go.touch()
    for proc in workers:
        stdout, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
        assert stdout.strip() == "ok"

    index = Index(path)
    try:
        steps = dict(index.items("steps"))
        for w in range(4):
            for i in range(150):
                assert steps[b"own-%d-%04d" % (w, i)] == bytes([w]) * 3000
        shared = {k: v for k, v in steps.items() if k.startswith(b"shared-")}
        assert len(shared) == 150
        assert set(shared.values()) == {b"same value from everyone" * 100}
        assert len(steps) == 4 * 150 + 150
        races = index.items("latest", b"race-")
        assert len(races) == 10
        assert {v for _, v in races} <= {b"worker-%d" % w for w in range(4)}
        assert index.get("meta", b"format") == FORMAT
    finally:
        index.close()


def test_processes_creating_one_index_at_once(tmp_path: Path, python) -> None:
    path, go = tmp_path / "index.lmdb", tmp_path / "go"
    code = _WRITER.replace("range(150)", "range(5)")
    workers = [python.popen(code, str(path), str(go), str(w)) for w in range(4)]
    go.touch()
    for proc in workers:
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode == 0, stderr
    index = Index(path)
    try:
        assert index.count("steps") == 4 * 5 + 5
        assert index.get("meta", b"format") == FORMAT
    finally:
        index.close()


def test_the_hit_table_follows_every_write_and_delete_of_a_step(index: Index) -> None:
    record = step_record("k" * 32)
    index.write([("steps", record.key.encode(), record.encode())])
    assert index.get("hits", record.key.encode()) == record.encode()[: 3 + 16 * 2]
    assert index.step_output_ids(record.key) == record.output_ids
    index.write([("steps", record.key.encode(), None)])
    assert index.get("hits", record.key.encode()) is None
    assert index.step_output_ids(record.key) is None

    index.write([("steps", record.key.encode(), record.encode())])
    assert index.update(lambda update: update.delete("steps", record.key.encode()))
    assert index.get("steps", record.key.encode()) is None
    assert index.step_output_ids(record.key) is None


def test_a_format_1_index_gains_its_hit_table_when_opened(tmp_path: Path) -> None:
    record = step_record("k" * 32)
    first = Index(tmp_path / "index.lmdb")
    first.write(
        [
            ("steps", record.key.encode(), record.encode()),
            ("hits", record.key.encode(), None),
            ("meta", b"format", b"zencache-index/1"),
        ]
    )
    first.close()
    upgraded = Index(tmp_path / "index.lmdb")
    try:
        assert upgraded.get("meta", b"format") == FORMAT
        assert upgraded.step_output_ids(record.key) == record.output_ids
    finally:
        upgraded.close()


def test_a_format_2_index_drops_its_lease_table_when_opened(tmp_path: Path) -> None:
    record = step_record("a" * 32)
    first = Index(tmp_path / "index.lmdb")
    first.write([("steps", record.key.encode(), record.encode())])
    with first.env.begin(write=True) as txn:  # what format 2 kept in the index
        leases = first.env.open_db(b"leases", txn=txn)
        txn.put(b"some-key", b'{"pid": 1}', db=leases)
        txn.put(b"format", b"zencache-index/2", db=first.env.open_db(b"meta", txn=txn))
    first.close()
    upgraded = Index(tmp_path / "index.lmdb")
    try:
        assert upgraded.get("meta", b"format") == FORMAT
        with upgraded.env.begin() as txn:
            assert txn.get(b"leases") is None
        assert upgraded.step_output_ids(record.key) == record.output_ids
    finally:
        upgraded.close()


def test_a_lookup_snapshot_sees_nothing_newer_until_it_ends(index: Index) -> None:
    record = step_record("b" * 32)
    assert index.step_output_ids(record.key, snapshot=True) is None
    index.write([("steps", record.key.encode(), record.encode())])
    assert index.step_output_ids(record.key, snapshot=True) is None  # the old snapshot
    assert index.step_output_ids(record.key) == record.output_ids  # a fresh read
    index.end_snapshot()
    assert index.step_output_ids(record.key, snapshot=True) == record.output_ids
    index.end_snapshot()
    index.end_snapshot()  # ending none is fine


def test_a_format_3_index_gains_pins_and_used_tables_when_opened(tmp_path: Path) -> None:
    record = step_record("c" * 32)
    first = Index(tmp_path / "index.lmdb")
    first.write([("steps", record.key.encode(), record.encode())])
    with first.env.begin(write=True) as txn:  # format 3 had neither table
        for name in (b"pins", b"used"):
            txn.drop(first.env.open_db(name, txn=txn), delete=True)
        txn.put(b"format", b"zencache-index/3", db=first.env.open_db(b"meta", txn=txn))
    first.close()
    upgraded = Index(tmp_path / "index.lmdb")
    try:
        assert upgraded.get("meta", b"format") == FORMAT == b"zencache-index/5"
        assert upgraded.step_output_ids(record.key) == record.output_ids
        upgraded.record_use([record.key], now=1000.0)
        assert upgraded.keys("used") == [record.key.encode()]
    finally:
        upgraded.close()


def test_uses_are_recorded_at_most_once_a_minute(index: Index) -> None:
    index.record_use(["k1"], now=1000.0)
    index.record_use(["k1"], now=1030.0)  # within the minute: not rewritten
    (stamp,) = struct.unpack("<d", index.get("used", b"k1") or b"")
    assert stamp == 1000.0
    index.record_use(["k1", "k2"], now=1061.0)
    assert struct.unpack("<d", index.get("used", b"k1") or b"") == (1061.0,)
    assert index.get("used", b"k2") is not None
