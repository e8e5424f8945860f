"""Record encodings: lossless round trips, the raw output ids of step records, and
refusal of record versions this zencache does not know."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zencache.storage.records import (
    RECORD_VERSION,
    RUN_RECORD_VERSION,
    STEP_RECORD_VERSION,
    ArtifactRecord,
    EnvRecord,
    FileEntry,
    RunRecord,
    StepRecord,
    StepRun,
    decode_output_ids,
)

# Pure CPU, but the deadline is wall time: a loaded CI machine must not fail it.
no_deadline = settings(deadline=None)

ids = st.binary(min_size=16, max_size=16).map(bytes.hex)
names = st.text(min_size=1, max_size=12)
floats = st.floats(allow_nan=False, allow_infinity=False)


@st.composite
def step_records(draw: st.DrawFn) -> StepRecord:
    outputs = draw(st.lists(names, max_size=4, unique=True))
    return StepRecord(
        key=draw(ids),
        step=draw(names),
        name=draw(names),
        pipeline=draw(names),
        output_ids=tuple(draw(ids) for _ in outputs),
        output_names=tuple(outputs),
        fingerprint=draw(ids),
        code_parts=draw(st.dictionaries(names, ids, max_size=3)),
        params=draw(
            st.dictionaries(names, st.fixed_dictionaries({"hash": ids, "repr": st.text()}))
        ),
        inputs=draw(st.dictionaries(names, ids, max_size=3)),
        materializers={o: draw(names) for o in outputs},
        untracked=tuple(draw(st.lists(names, max_size=2))),
        run_id=draw(st.text(max_size=20)),
        created=draw(floats),
        duration=draw(floats),
        metrics=draw(st.dictionaries(names, floats, max_size=3)),
        metric_history=draw(
            st.dictionaries(
                names,
                st.lists(st.tuples(floats, st.none() | st.integers(-5, 10**6)).map(list)),
                max_size=2,
            )
        ),
        metadata=draw(st.dictionaries(names, json_values, max_size=3)),
    )


file_entries = st.one_of(
    st.binary(max_size=50).map(lambda b: FileEntry(size=len(b), inline=b)),
    st.builds(
        FileEntry,
        size=st.integers(0, 2**40),
        chunks=st.lists(ids, min_size=1, max_size=5).map(tuple),
    ),
)
artifact_records = st.builds(
    ArtifactRecord,
    content_id=ids,
    materializer=names,
    type_name=names,
    files=st.dictionaries(names, file_entries, max_size=4),
    created=floats,
)
step_runs = st.builds(
    StepRun,
    name=names,
    step=names,
    key=ids,
    status=st.sampled_from(["executed", "cached", "failed", "skipped", "interrupted"]),
    duration=floats,
    outputs=st.dictionaries(names, ids, max_size=3),
    error=st.text(max_size=30),
) | st.builds(  # the defaults: no outputs, no error
    StepRun, name=names, step=names, key=ids, status=st.just("skipped"), duration=floats
)
run_records = st.builds(
    RunRecord,
    run_id=names,
    pipeline=names,
    params=st.dictionaries(names, st.text(max_size=10), max_size=3),
    status=st.sampled_from(["completed", "failed", "interrupted"]),
    started=floats,
    finished=floats,
    env_id=ids,
    steps=st.lists(step_runs, max_size=6).map(tuple),
    output=st.lists(names, max_size=3).map(tuple),
    output_is_tuple=st.booleans(),
    target=st.text(max_size=20),
    step_logs=st.dictionaries(
        names,
        st.fixed_dictionaries({"metrics": st.dictionaries(names, floats, max_size=2)}),
        max_size=2,
    ),
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | floats | st.text(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
env_records = st.builds(
    EnvRecord,
    env_id=ids,
    python=names,
    implementation=names,
    platform=names,
    machine=names,
    distributions=st.dictionaries(names, names, max_size=5),
    extra=st.dictionaries(st.text(max_size=5), json_values, max_size=3),
)


@given(step_records())
@no_deadline
def test_step_records_round_trip(record: StepRecord) -> None:
    data = record.encode()
    assert StepRecord.decode(data) == record
    assert decode_output_ids(data) == record.output_ids
    assert data[0] == STEP_RECORD_VERSION


@given(artifact_records)
@no_deadline
def test_artifact_records_round_trip(record: ArtifactRecord) -> None:
    assert ArtifactRecord.decode(record.encode()) == record


@given(run_records)
@no_deadline
def test_run_records_round_trip(record: RunRecord) -> None:
    assert RunRecord.decode(record.encode()) == record


@given(env_records)
@no_deadline
def test_env_records_round_trip(record: EnvRecord) -> None:
    assert EnvRecord.decode(record.encode()) == record


def test_encodings_are_deterministic() -> None:
    # Dict order does not leak into the stored bytes.
    a = EnvRecord("e", "3.11", "CPython", "Linux", "x86_64", {"a": "1", "b": "2"})
    b = EnvRecord("e", "3.11", "CPython", "Linux", "x86_64", {"b": "2", "a": "1"})
    assert a.encode() == b.encode()


def test_output_ids_are_raw_bytes_up_front() -> None:
    record = StepRecord(
        key="k", step="m:f", name="f", pipeline="m:p",
        output_ids=("00" * 16, "ff" * 16), output_names=("a", "b"), fingerprint="x",
    )  # fmt: skip
    data = record.encode()
    assert data[:3] == bytes([STEP_RECORD_VERSION]) + (2).to_bytes(2, "little")
    assert data[3:35] == b"\x00" * 16 + b"\xff" * 16


def test_a_version_1_step_record_still_reads_with_nothing_logged() -> None:
    # The bytes a zencache before step metrics wrote (version 1: no metrics fields).
    body = {
        "key": "k", "step": "m:f", "name": "f", "pipeline": "m:p", "output_names": ["a"],
        "fingerprint": "x", "code_parts": {}, "params": {}, "inputs": {},
        "materializers": {}, "untracked": [], "run_id": "r", "created": 1.0,
        "duration": 2.0, "param_values": {}, "module_file": "", "env_id": "e",
    }  # fmt: skip
    data = bytes([1]) + (1).to_bytes(2, "little") + b"\xab" * 16 + json.dumps(body).encode()
    record = StepRecord.decode(data)
    assert record.output_ids == ("ab" * 16,)
    assert decode_output_ids(data) == ("ab" * 16,)
    assert (record.metrics, record.metric_history, record.metadata) == ({}, {}, {})
    assert record.run_id == "r"


def test_a_step_record_keeps_what_the_step_logged() -> None:
    record = StepRecord(
        key="k", step="m:f", name="f", pipeline="m:p", output_ids=("00" * 16,),
        output_names=("a",), fingerprint="x", metrics={"acc": 0.5, "nan": float("nan")},
        metric_history={"loss": [[1.0, 0], [0.5, 1]]}, metadata={"note": "hi", "n": [1, 2]},
    )  # fmt: skip
    back = StepRecord.decode(record.encode())
    assert back.metrics["acc"] == 0.5 and back.metrics["nan"] != back.metrics["nan"]
    assert back.metric_history == {"loss": [[1.0, 0], [0.5, 1]]}
    assert back.metadata == {"note": "hi", "n": [1, 2]}


def test_a_run_record_with_nothing_logged_is_written_as_before() -> None:
    plain = RunRecord("r", "m:p", {}, "completed", 0.0, 1.0, "e", ())
    assert b"step_logs" not in plain.encode()
    logged = RunRecord(
        "r", "m:p", {}, "completed", 0.0, 1.0, "e", (), step_logs={"s": {"metrics": {"a": 1.0}}}
    )
    assert RunRecord.decode(logged.encode()) == logged
    assert RunRecord.decode(plain.encode()).step_logs == {}


@pytest.mark.parametrize("version", [0, RUN_RECORD_VERSION + 1, 255])
def test_an_unknown_record_version_is_refused(version: int) -> None:
    step = StepRecord(
        key="k", step="m:f", name="f", pipeline="m:p",
        output_ids=("00" * 16,), output_names=("a",), fingerprint="x",
    )  # fmt: skip
    run = RunRecord("r", "m:p", {}, "completed", 0.0, 1.0, "e", ())
    artifact = ArtifactRecord("c", "m@1", "builtins:int", {"f": FileEntry(1, inline=b"1")})
    env = EnvRecord("e", "3.11", "CPython", "Linux", "x86_64", {})
    cases = [
        (step, StepRecord.decode, f"{RECORD_VERSION}"),
        (step, decode_output_ids, f"{RECORD_VERSION}"),
        (run, RunRecord.decode, f"1 and 2 and {RUN_RECORD_VERSION}"),
        (artifact, ArtifactRecord.decode, f"{RECORD_VERSION}"),
        (env, EnvRecord.decode, f"{RECORD_VERSION}"),
    ]
    for record, decode, known in cases:
        data = bytes([version]) + record.encode()[1:]
        with pytest.raises(ValueError, match=known):
            decode(data)


def test_the_run_record_version_is_not_read_by_other_records() -> None:
    env = EnvRecord("e", "3.11", "CPython", "Linux", "x86_64", {})
    with pytest.raises(ValueError, match=f"reads {RECORD_VERSION}$"):
        EnvRecord.decode(bytes([RUN_RECORD_VERSION]) + env.encode()[1:])


# --- run records: steps in columns (versions 2 and 3), a JSON object per step (version 1) ---------

OLD_RUN = (
    b"\x01"
    b'{"env_id":"e","finished":2.5,"output":["b.output"],"output_is_tuple":false,'
    b'"params":{"start":"0"},"pipeline":"chain","run_id":"r1","started":1.5,'
    b'"status":"failed","steps":['
    b'{"duration":0.25,"error":"","key":"k1","name":"a","outputs":{"output":"i1"},'
    b'"status":"cached","step":"m:inc"},'
    b'{"duration":1e-06,"error":"boom","key":"k2","name":"b","outputs":{},'
    b'"status":"failed","step":"m:inc"}],'
    b'"sys_path":["/src"],"target":"m:chain","workdir":"/w"}'
)


def test_a_run_record_of_version_1_still_reads() -> None:
    record = RunRecord.decode(OLD_RUN)
    assert record == RunRecord(
        run_id="r1",
        pipeline="chain",
        params={"start": "0"},
        status="failed",
        started=1.5,
        finished=2.5,
        env_id="e",
        steps=(
            StepRun("a", "m:inc", "k1", "cached", 0.25, {"output": "i1"}),
            StepRun("b", "m:inc", "k2", "failed", 1e-06, {}, "boom"),
        ),
        output=("b.output",),
        target="m:chain",
        workdir="/w",
        sys_path=("/src",),
    )
    assert all(type(s) is StepRun and type(s.outputs) is dict for s in record.steps)
    # Rewritten, it takes the current layout and keeps every value.
    assert RunRecord.decode(record.encode()) == record


def test_a_run_record_keeps_its_steps_in_columns() -> None:
    steps = (
        StepRun("a", "m:inc", "k1", "cached", 0.25, {"z": "i2", "a": "i1"}),
        StepRun("b", "m:inc", "", "skipped", 0.0, error="not run"),
    )
    data = RunRecord("r", "p", {}, "failed", 1.0, 2.0, "e", steps).encode()
    assert data[0] == RUN_RECORD_VERSION
    assert json.loads(data[1:])["steps"] == {
        "duration": "000000000000d03f0000000000000000",  # little-endian float64s
        "error": ["", "not run"],
        "key": ["k1", ""],
        "name": ["a", "b"],
        "outputs": [{"a": "i1", "z": "i2"}, {}],
        "status": ["cached", "skipped"],
        "step": {"same": "m:inc"},  # every step agrees: said once (version 3)
    }
    assert RunRecord.decode(data).steps == steps


def test_one_output_each_of_other_names_is_kept_per_step() -> None:
    steps = (
        StepRun("a", "m:f", "k1", "cached", 0.0, {"x": "i1"}),
        StepRun("b", "m:f", "k2", "cached", 0.0, {"y": "i2"}),
    )
    data = RunRecord("r", "p", {}, "completed", 1.0, 2.0, "e", steps).encode()
    assert json.loads(data[1:])["steps"]["outputs"] == [{"x": "i1"}, {"y": "i2"}]
    assert RunRecord.decode(data).steps == steps


def test_a_run_record_of_version_2_still_reads() -> None:
    body = {
        "env_id": "e", "finished": 2.0, "output": [], "output_is_tuple": False,
        "params": {}, "pipeline": "p", "run_id": "r", "started": 1.0, "status": "completed",
        "sys_path": [], "target": "", "workdir": "",
        "steps": {
            "duration": "000000000000d03f000000000000e03f", "error": ["", ""],
            "key": ["k1", "k2"], "name": ["a", "b"], "outputs": [{"output": "i1"}, {}],
            "status": ["cached", "executed"], "step": ["m:inc", "m:inc"],
        },
    }  # fmt: skip
    record = RunRecord.decode(b"\x02" + json.dumps(body).encode())
    assert record.steps == (
        StepRun("a", "m:inc", "k1", "cached", 0.25, {"output": "i1"}),
        StepRun("b", "m:inc", "k2", "executed", 0.5, {}),
    )


def test_a_column_said_once_gives_every_step_its_value() -> None:
    steps = tuple(
        StepRun(f"s{i}", "m:inc", f"k{i}", "cached", 0.0, {"output": f"i{i}"}, "", "remote")
        for i in range(3)
    )
    data = RunRecord("r", "p", {}, "completed", 1.0, 2.0, "e", steps).encode()
    columns = json.loads(data[1:])["steps"]
    assert {n for n, c in columns.items() if isinstance(c, dict)} == {
        "step", "status", "error", "source", "outputs"
    }  # fmt: skip
    assert columns["outputs"] == {"one": "output", "ids": ["i0", "i1", "i2"]}
    decoded = RunRecord.decode(data).steps
    assert decoded == steps and all(type(s) is StepRun for s in decoded)


@given(st.lists(step_runs, min_size=1, max_size=50).map(tuple))
@no_deadline
def test_run_record_columns_round_trip_to_equal_step_runs(steps: tuple[StepRun, ...]) -> None:
    record = RunRecord("r", "p", {}, "completed", 0.0, 1.0, "e", steps)
    decoded = RunRecord.decode(record.encode()).steps
    assert decoded == steps
    assert all(type(s) is StepRun and type(s.outputs) is dict for s in decoded)
    assert [list(s.outputs) for s in decoded] == [sorted(s.outputs) for s in steps]


@pytest.mark.parametrize(
    "columns",
    [
        {"name": ["a", "b"]},  # two names, one of everything else
        {"duration": "00" * 16},  # two durations
        {"duration": "00" * 7},  # not a float64
    ],
)
def test_damaged_run_record_columns_are_refused(columns: dict[str, object]) -> None:
    data = RunRecord("r", "p", {}, "completed", 0.0, 1.0, "e", ()).encode()
    body = json.loads(data[1:])
    body["steps"] = {name: ["x"] for name in StepRun._fields} | {"duration": "00" * 8} | columns
    with pytest.raises(ValueError):
        RunRecord.decode(data[:1] + json.dumps(body).encode())


def test_step_runs_are_immutable_and_share_no_mutable_default() -> None:
    a = StepRun("a", "m:f", "", "skipped", 0.0)
    b = StepRun("b", "m:f", "", "skipped", 0.0)
    assert a.outputs == {} and a.error == ""
    with pytest.raises(AttributeError):
        a.status = "cached"  # type: ignore[misc]
    with pytest.raises(TypeError):
        a.outputs["x"] = "1"  # type: ignore[index]
    assert b.outputs == {}
    assert a._replace(status="cached").status == "cached"
    assert a.to_json() == {
        "duration": 0.0, "error": "", "key": "", "name": "a", "outputs": {},
        "status": "skipped", "step": "m:f",
    }  # fmt: skip


@pytest.mark.parametrize("decode", [RunRecord.decode, ArtifactRecord.decode, EnvRecord.decode])
def test_an_empty_record_is_refused(decode) -> None:
    with pytest.raises(ValueError):
        decode(b"")


def test_a_step_run_with_default_outputs_is_read_only_and_pickles() -> None:
    import copy
    import pickle

    skipped = StepRun("a", "m:f", "", "skipped", 0.0)
    with pytest.raises(TypeError, match="read-only"):
        skipped.outputs["x"] = "1" * 32  # type: ignore[index]
    assert StepRun("b", "m:f", "", "skipped", 0.0).outputs == {}
    assert pickle.loads(pickle.dumps(skipped)) == skipped
    assert copy.deepcopy(skipped) == skipped
