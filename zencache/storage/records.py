"""Immutable records kept in the index, and their versioned byte encodings.

Part of the index layer: imports hashing only. Each encoding starts with a
version byte so that a future format can be read (or refused) explicitly. Step
records put their output ids first, in raw form, because a cache hit needs only
those: decoding them is a slice, not a JSON parse.
"""

from __future__ import annotations

import json
import operator
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

from ..hashing import ContentId

RECORD_VERSION = 1
# Step records: 2 adds what the step logged (metrics, their series, metadata); the
# head (version, count, raw output ids) is laid out as in 1, which is still read.
STEP_RECORD_VERSION = 2
_STEP_VERSIONS_READ = (1, 2)
# Run records: 2 keeps a run's steps in columns, one per StepRun field (see
# _step_columns); 3 writes a column whose steps all agree as {"same": value}, and the
# outputs of steps that each have one output of one name as {"one": name, "ids": [...]};
# 1, a JSON object per step, and 2 are still read.
RUN_RECORD_VERSION = 3
_RUN_VERSIONS_READ = (1, 2, 3)
_COUNT = struct.Struct("<BH")  # version, number of outputs
_ID_BYTES = 16
_HEAD = _COUNT.size
_ONE_OUTPUT = _COUNT.pack(STEP_RECORD_VERSION, 1)  # the head of most step records
# For the index's hit path, which inlines decode_output_ids for one output.
ONE_OUTPUT_HEAD, RAW_ID_BYTES = _ONE_OUTPUT, _ID_BYTES


@dataclass(frozen=True, slots=True)
class StepRecord:
    """What one execution of a step produced, under its cache key."""

    key: str
    step: str  # identity: module:qualname
    name: str  # invocation name in its pipeline
    pipeline: str
    output_ids: tuple[ContentId, ...]  # in the order of output_names
    output_names: tuple[str, ...]
    fingerprint: str
    code_parts: dict[str, str] = field(default_factory=dict)
    params: dict[str, dict[str, str]] = field(default_factory=dict)  # name -> {hash, repr}
    inputs: dict[str, ContentId] = field(default_factory=dict)
    materializers: dict[str, str] = field(default_factory=dict)  # output -> identity@version
    untracked: tuple[str, ...] = ()
    run_id: str = ""
    created: float = 0.0
    duration: float = 0.0
    # For audits: every parameter's value (ignored ones too) in a pickle-free
    # tagged encoding (materializers/params.py), and the file of the step's module.
    param_values: dict[str, dict[str, Any]] = field(default_factory=dict)
    module_file: str = ""
    # The environment it was recorded in: audits compare against it even after gc
    # removed the run record that executed it ("" in entries of older versions).
    env_id: str = ""
    # What it read from outside the pipeline: "path:<param>" -> {path, kind, digest,
    # size[, count]} and "env:<NAME>" -> {name, value} (inputs/external.py).
    external: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What the step logged while executing (zencache.log_metric / log_metadata):
    # final metric values, the series of metrics logged more than once or with a
    # step number (name -> [[value, step], ...]), and JSON metadata. Version 2.
    metrics: dict[str, float] = field(default_factory=dict)
    metric_history: dict[str, list[list[Any]]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    # The classes fingerprinted beside the step's function ("module:qualname"): those
    # its parameters' values and upstream code carry in. An audit hashes them again.
    carried: tuple[str, ...] = ()

    def encode(self) -> bytes:
        head = _COUNT.pack(STEP_RECORD_VERSION, len(self.output_ids))
        ids = b"".join(bytes.fromhex(i) for i in self.output_ids)
        rest = _fields(self)
        del rest["output_ids"]
        return head + ids + _dumps(rest)

    @classmethod
    def decode(cls, data: bytes) -> StepRecord:
        ids = decode_output_ids(data)
        rest = json.loads(bytes(data[_COUNT.size + _ID_BYTES * len(ids) :]))
        rest["output_names"] = tuple(rest["output_names"])
        rest["untracked"] = tuple(rest.get("untracked", ()))
        rest["carried"] = tuple(rest.get("carried", ()))
        return cls(output_ids=ids, **rest)


def decode_output_ids(data: bytes) -> tuple[ContentId, ...]:
    """The output ids of an encoded StepRecord: all a cache hit needs."""
    if data[:_HEAD] == _ONE_OUTPUT:  # most steps: a comparison instead of unpacking
        return (data[_HEAD : _HEAD + _ID_BYTES].hex(),)
    version, count = _COUNT.unpack_from(data)
    if version not in _STEP_VERSIONS_READ:
        raise ValueError(
            f"step record of version {version}; this zencache reads "
            f"{' and '.join(map(str, _STEP_VERSIONS_READ))}"
        )
    # One hex conversion for all ids, then slices: this runs once per cache hit.
    text = data[_COUNT.size : _COUNT.size + _ID_BYTES * count].hex()
    if count == 1:
        return (text,)
    return tuple(text[i : i + 2 * _ID_BYTES] for i in range(0, len(text), 2 * _ID_BYTES))


def hit_entry(data: bytes) -> bytes | None:
    """The head of an encoded StepRecord (version, count, raw output ids): what the
    index's hit table keeps. None when the record is too damaged to have one."""
    if len(data) < _COUNT.size:
        return None
    version, count = _COUNT.unpack_from(data)
    end = _COUNT.size + _ID_BYTES * count
    if version not in _STEP_VERSIONS_READ or len(data) < end:
        return None
    return bytes(data[:end])


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file a materializer wrote: inline bytes for small ones, else chunk ids."""

    size: int
    chunks: tuple[ContentId, ...] = ()
    inline: bytes | None = None

    def to_json(self) -> dict[str, Any]:
        if self.inline is not None:
            return {"size": self.size, "inline": self.inline.hex()}
        return {"size": self.size, "chunks": list(self.chunks)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileEntry:
        if "inline" in data:
            return cls(size=data["size"], inline=bytes.fromhex(data["inline"]))
        return cls(size=data["size"], chunks=tuple(data["chunks"]))


@dataclass(frozen=True, slots=True)
class ArtifactRecord:
    """A stored value: how to load it (materializer, type) and where its bytes are."""

    content_id: ContentId
    materializer: str  # identity@version
    type_name: str  # module:qualname of the value's type
    files: dict[str, FileEntry]
    created: float = 0.0

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files.values())

    def object_ids(self) -> set[ContentId]:
        return {c for f in self.files.values() for c in f.chunks}

    def encode(self) -> bytes:
        body = {
            "content_id": self.content_id,
            "materializer": self.materializer,
            "type_name": self.type_name,
            "files": {name: f.to_json() for name, f in sorted(self.files.items())},
            "created": self.created,
        }
        return bytes([RECORD_VERSION]) + _dumps(body)

    @classmethod
    def decode(cls, data: bytes) -> ArtifactRecord:
        body = _loads_versioned(data, "artifact")
        body["files"] = {name: FileEntry.from_json(f) for name, f in body["files"].items()}
        return cls(**body)


class _EmptyOutputs(dict):
    """The default of StepRun.outputs: a tuple's defaults are shared by every
    instance, so the empty mapping must be one that no caller can fill. (A
    MappingProxyType would do, but it cannot be pickled or deep-copied.)"""

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> None:
        raise TypeError("a StepRun's default outputs are read-only")

    # Overrides with a catch-all signature on purpose: each one only refuses.
    __setitem__ = __delitem__ = update = setdefault = pop = popitem = clear = _refuse  # type: ignore[assignment]
    __ior__ = _refuse  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (_EmptyOutputs, ())


_NO_OUTPUTS: Mapping[str, ContentId] = _EmptyOutputs()


class StepRun(NamedTuple):
    """One step's part in one run.

    A NamedTuple, not a frozen dataclass like the other records: the runner makes
    one per step, and a frozen dataclass's __init__ (an object.__setattr__ per
    field) cost 0.8 µs of a cached step's ~13, a tuple 0.23. It is as immutable;
    unlike a dataclass it is also a tuple (it compares equal to one, and
    dataclasses.asdict/replace do not apply: use _asdict()/_replace()).
    """

    name: str
    step: str
    key: str
    status: str  # executed | cached | failed | skipped | interrupted
    duration: float
    outputs: Mapping[str, ContentId] = _NO_OUTPUTS
    error: str = ""
    source: str = ""  # where a cached step's entry came from: "" (this cache) | "remote"

    def to_json(self) -> dict[str, Any]:
        """Its fields as a JSON object, keys and outputs in sorted order; a cached
        step also says where its entry came from (`source`: local or remote)."""
        data = {
            "duration": self.duration,
            "error": self.error,
            "key": self.key,
            "name": self.name,
            "outputs": dict(sorted(self.outputs.items())),
            "status": self.status,
            "step": self.step,
        }
        if self.status == "cached":
            data["source"] = self.source or "local"
        return dict(sorted(data.items()))


@dataclass(frozen=True, slots=True)
class RunRecord:
    run_id: str
    pipeline: str
    params: dict[str, str]  # name -> repr
    status: str  # completed | failed | interrupted
    started: float
    finished: float
    env_id: str
    steps: tuple[StepRun, ...]
    output: tuple[str, ...] = ()  # "step.output" references of the pipeline's return value
    output_is_tuple: bool = False
    target: str = ""  # how the pipeline was named when run (module:name), if known
    # Where the user's code was importable from, so that an audit can import it again.
    workdir: str = ""
    sys_path: tuple[str, ...] = ()
    # What steps logged (metrics, series, metadata), by step name, for the steps
    # this run executed or replayed to hooks; omitted from the encoding when empty,
    # so that a run with nothing logged is written as before.
    step_logs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def encode(self) -> bytes:
        body = _fields(self)
        if not body["step_logs"]:
            del body["step_logs"]
        body["steps"] = _step_columns(self.steps)
        return bytes([RUN_RECORD_VERSION]) + _RUN_ENCODER.encode(body).encode()

    @classmethod
    def decode(cls, data: bytes) -> RunRecord:
        body = _loads_versioned(data, "run", _RUN_VERSIONS_READ)
        if data[0] == 1:
            body["steps"] = tuple(StepRun(**s) for s in body["steps"])
        else:
            columns = body["steps"]
            columns["duration"] = _unpack_durations(columns["duration"])
            count = len(columns["duration"])
            outputs = columns.get("outputs")
            if type(outputs) is dict:  # one output of one name for every step (version 3)
                name = outputs["one"]
                columns["outputs"] = [{name: content_id} for content_id in outputs["ids"]]
            for name, column in columns.items():
                if type(column) is dict:  # one value for every step (version 3)
                    columns[name] = (column["same"],) * count
            # Columns added since a record was written (source) take their defaults.
            defaults = StepRun._field_defaults
            rows = zip(
                *[
                    columns[name] if name in columns else (defaults[name],) * count
                    for name in StepRun._fields
                ],
                strict=True,
            )
            body["steps"] = tuple(map(StepRun._make, rows))
        body["output"] = tuple(body.get("output", ()))
        body["sys_path"] = tuple(body.get("sys_path", ()))
        return cls(**body)


def _step_columns(steps: tuple[StepRun, ...]) -> dict[str, Any]:
    """The steps of a run record as one column per StepRun field, in step order: a
    JSON object per step (version 1) cost 2.3 µs a step to build and encode.
    The durations are one string, the hex of their little-endian float64s: exact,
    where json's float repr cost 0.45 µs a step."""
    columns: dict[str, Any] = (
        dict(zip(StepRun._fields, zip(*steps, strict=True), strict=True))
        if steps
        else {name: () for name in StepRun._fields}
    )
    columns["duration"] = struct.pack(f"<{len(steps)}d", *columns["duration"]).hex()
    columns["outputs"] = _outputs_column(columns["outputs"])
    if not any(columns["source"]):
        del columns["source"]  # a run without remote hits is encoded as before the column
    if len(steps) > 1:
        # Every step of most runs has the same status, no error, often one identity:
        # said once, a third of a 1,000-step record. Counting is a pointer comparison
        # per step when the values are one object, as they mostly are.
        for name in _TEXT_COLUMNS:
            column = columns.get(name)
            if column is not None and column.count(column[0]) == len(column):
                columns[name] = {"same": column[0]}
    return columns


_TEXT_COLUMNS = ("step", "status", "error", "source")


def _outputs_column(outputs: tuple[Mapping[str, ContentId], ...]) -> Any:
    """Each step's outputs; when every step has one output of one name (most runs),
    {"one": name, "ids": [...]} (version 3): a list of ids encodes in a third of the
    time of as many one-key objects. Checked in C loops, not a Python loop per step."""
    if outputs and set(map(len, outputs)) == {1}:
        (name,) = outputs[0]
        try:
            return {"one": name, "ids": list(map(operator.itemgetter(name), outputs))}
        except KeyError:
            pass  # one output each, not all of one name
    # The shared empty default is a read-only mapping, which json cannot encode.
    return [o if type(o) is dict else dict(o) for o in outputs]


def _unpack_durations(text: str) -> tuple[float, ...]:
    data = bytes.fromhex(text)
    if len(data) % 8:
        raise ValueError(f"a run record's durations take {len(data)} bytes, not 8 per step")
    return struct.unpack(f"<{len(data) // 8}d", data)


@dataclass(frozen=True, slots=True)
class EnvRecord:
    env_id: str
    python: str
    implementation: str
    platform: str
    machine: str
    distributions: dict[str, str]
    extra: dict[str, Any] = field(default_factory=dict)

    def encode(self) -> bytes:
        return bytes([RECORD_VERSION]) + _dumps(_fields(self))

    @classmethod
    def decode(cls, data: bytes) -> EnvRecord:
        return cls(**_loads_versioned(data, "environment"))


def _fields(record: Any) -> dict[str, Any]:
    """A record's fields by name: the JSON of asdict(record), without its deep copy
    of every nested value (a 1,000-step run record spent 12 µs a step in it)."""
    names = _FIELD_NAMES.get(type(record))
    if names is None:
        names = _FIELD_NAMES[type(record)] = tuple(f.name for f in fields(record))
    return {name: getattr(record, name) for name in names}


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _dumps(body: Any) -> bytes:
    return _ENCODER.encode(body).encode()


# One encoder for every record: json.dumps builds a new JSONEncoder per call when
# given options, which cost as much as encoding a step record.
_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True)
# A run record holds only strings, numbers and the containers built here, so it
# cannot be circular: without the check (a dict entry per container, a thousand
# output dicts a run) its encoding costs a quarter less.
_RUN_ENCODER = json.JSONEncoder(separators=(",", ":"), sort_keys=True, check_circular=False)


def _loads_versioned(
    data: bytes, kind: str, versions: tuple[int, ...] = (RECORD_VERSION,)
) -> dict[str, Any]:
    if not data or data[0] not in versions:
        raise ValueError(
            f"{kind} record of an unknown version; this zencache reads "
            f"{' and '.join(map(str, versions))}"
        )
    return json.loads(bytes(data[1:]))
