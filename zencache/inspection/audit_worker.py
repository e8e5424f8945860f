"""The audit's fresh interpreter: re-executes one recorded step and reports content ids.

`python -m zencache.inspection.audit_worker REQUEST.json RESULT.json`. The request names the
cache and the step entry (its key) and where the user's code was importable from;
the worker imports the step's module, checks that the code fingerprint, the
materializers and every restored parameter still match the entry, loads the
recorded inputs, calls the step, and computes each output's content id without
storing anything (a digest-only store), all through the step-execution core a run
uses (executors/execute.py). The result is JSON written to RESULT.json
(the step's own prints go to stdout/stderr, which the driver captures):

    status           "ok" | "not checkable" | "failed" (the step raised, or returned
                     something its outputs cannot hold)
    reason           one line, for "not checkable" and "failed"
    code_changes     fingerprint parts that differ from the entry ("changed code:m:f")
    missing_inputs   input names whose artifacts are gone or damaged
    deterministic    the step's current @step(deterministic=...)
    outputs          {name: {"id", "difference", "max_abs_diff"}}, differences only
                     for outputs whose id differs from the entry's
    duration         seconds spent in the step function
    environment      this interpreter's environment record (after the step ran, so
                     that numpy's configuration is in it when the step loaded numpy)

Reads the cache, never writes it. Sits in the audit layer: imports the layers
below, never the CLI.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
import time
import traceback
import types
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.steps import Step, StepInstance
from ..errors import MaterializerError, MissingObjectError, StepFailedError, ZencacheError
from ..executors import execute
from ..executors.execute import DamagedInputs, call_step, materialize
from ..fingerprint import fingerprint
from ..fingerprint.environment import current_environment
from ..hashing import ContentId, digest_bytes, hash_value
from ..materializers import registry
from ..materializers.artifacts import load_artifact
from ..materializers.params import ParameterRestoreError, decode_param
from ..storage.cache import Cache
from ..storage.records import StepRecord
from ..storage.store import ObjectStore

OK, NOT_CHECKABLE, FAILED = "ok", "not checkable", "failed"


class _NotCheckable(Exception):
    def __init__(self, reason: str, **details: Any) -> None:
        super().__init__(reason)
        self.details = details


class DigestOnlyStore(ObjectStore):
    """Computes the ids a put would give, and writes nothing: the audit's outputs
    must never land in (or overwrite anything in) the cache."""

    def put(self, data: Any) -> ContentId:
        return digest_bytes(memoryview(data).cast("B"))

    def _put(self, view: memoryview, object_id: ContentId) -> ContentId:
        return object_id  # every write goes through here (put_blob's chunks too)


def main(argv: list[str]) -> int:
    request_path, result_path = argv[1], argv[2]
    request = json.loads(Path(request_path).read_text())
    try:
        result = check_step(request)
    except BaseException as exc:  # report anything, even a SystemExit raised by user code
        result = {
            "status": NOT_CHECKABLE,
            "reason": f"the audit worker failed: {type(exc).__name__}: {exc}",
            "error": "".join(traceback.format_exception(exc)),
        }
    result.setdefault("environment", _environment())
    tmp = Path(result_path + ".tmp")
    tmp.write_text(json.dumps(result, allow_nan=False, default=str))
    os.replace(tmp, result_path)
    return 0


def check_step(request: dict[str, Any]) -> dict[str, Any]:
    for entry in reversed(request.get("sys_path", [])):
        if entry not in sys.path and os.path.isdir(entry):
            sys.path.insert(0, entry)
    cache = Cache(request["cache_dir"])
    record = cache.index.get_step(request["key"])
    if record is None:
        return _not_checkable(
            f"its cache entry {request['key'][:8]} is gone (gc, clear or repair removed it)"
        )
    try:
        step = import_step(record)
        check_code(step, record)
        materializers = _materializers(step, record)
        params = restore_params(record)
        inputs = load_inputs(cache, step, record)
    except _NotCheckable as exc:
        return _not_checkable(str(exc), **exc.details)
    result: dict[str, Any] = {
        "status": OK,
        "deterministic": step.options.deterministic,
        "code_changes": [],
        "missing_inputs": [],
    }
    started = time.perf_counter()
    try:
        values = call_step(step.name, step, inputs, params, check_types=False)
    except StepFailedError as exc:
        result["duration"] = time.perf_counter() - started
        raised = exc.__cause__ or exc
        return {
            **result,
            "status": FAILED,
            "reason": f"the step raised {type(raised).__name__}: {_first_line(raised)}",
            "error": exc.traceback_text or "".join(traceback.format_exception(raised)),
        }
    except (ZencacheError, TypeError, ValueError) as exc:  # returned what its outputs cannot hold
        result["duration"] = time.perf_counter() - started
        return _cannot_store(result, exc)
    result["duration"] = time.perf_counter() - started
    del inputs  # the recorded outputs may be loaded next, for differences
    try:
        digests = DigestOnlyStore(
            Path(request["cache_dir"]) / "objects", chunk_size=cache.store.chunk_size
        )
        artifacts = materialize(digests, materializers, values)
        outputs: dict[str, Any] = {}
        for name, recorded in zip(record.output_names, record.output_ids, strict=True):
            value = values[name]
            content_id = artifacts[name].content_id
            out: dict[str, Any] = {"id": content_id, "difference": "", "max_abs_diff": None}
            if content_id != recorded:
                out.update(describe_difference(cache, recorded, value))
            outputs[name] = out
    except (ZencacheError, TypeError, ValueError) as exc:
        return _cannot_store(result, exc)
    result["outputs"] = outputs
    return result


def _cannot_store(result: dict[str, Any], exc: BaseException) -> dict[str, Any]:
    return {
        **result,
        "status": FAILED,
        "reason": f"its outputs cannot be stored: {type(exc).__name__}: {_first_line(exc)}",
        "error": "".join(traceback.format_exception(exc)),
    }


# --- what must still match the entry --------------------------------------------------------


def import_step(record: StepRecord) -> Step[Any, Any]:
    """The step object named by the entry's identity, imported as a run would."""
    module_name, _, qualname = record.step.partition(":")
    try:
        module = _import_module(module_name, record.module_file)
    except _NotCheckable:
        raise
    except BaseException as exc:
        where = f" (from {record.module_file})" if record.module_file else ""
        raise _NotCheckable(
            f"cannot import its module {module_name!r}{where}: {type(exc).__name__}: "
            f"{_first_line(exc)}; run the audit from the project's folder"
        ) from exc
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise _NotCheckable(
                f"code changed since: {record.step} no longer exists (it is not an attribute "
                f"of module {module_name!r}{'; steps defined inside functions cannot be imported' if '<locals>' in qualname else ''})",
                code_changes=[f"removed {record.step}"],
            )
    if isinstance(obj, StepInstance):
        obj = obj.step
    if not isinstance(obj, Step):
        raise _NotCheckable(
            f"code changed since: {record.step} is no longer a @step",
            code_changes=[f"changed {record.step}"],
        )
    return obj


def _import_module(name: str, module_file: str) -> types.ModuleType:
    if name in sys.modules:
        return sys.modules[name]
    if module_file and "." not in name and os.path.isfile(module_file):
        # A script (recorded under its file's stem) or a top-level module: import that
        # very file, whatever else of that name sys.path would find first.
        spec = importlib.util.find_spec(name) if _findable(name) else None
        same = spec is not None and spec.origin and _same_file(spec.origin, module_file)
        if not same:
            sys.path.insert(0, os.path.dirname(module_file))
            spec = importlib.util.spec_from_file_location(name, module_file)
            if spec is None or spec.loader is None:
                raise _NotCheckable(f"{module_file} cannot be imported as Python source")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
    return importlib.import_module(name)


def _findable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_code(step: Step[Any, Any], record: StepRecord) -> None:
    """The step's code fingerprint now must be the one the entry was made with."""
    if step.options.version is not None:
        now = f"version:{step.options.version}"
        if now != record.fingerprint:
            raise _NotCheckable(
                f"code changed since: its version= pin is now {now!r}, the entry has "
                f"{record.fingerprint!r}",
                code_changes=["version="],
            )
        return
    if record.fingerprint.startswith("version:"):
        raise _NotCheckable(
            f"code changed since: the entry pinned {record.fingerprint!r}, the step no "
            "longer pins version=",
            code_changes=["version="],
        )
    try:
        fp = fingerprint(step.fn, tuple(_import_class(name) for name in record.carried))
    except _NotCheckable:
        raise
    except Exception as exc:
        raise _NotCheckable(f"cannot fingerprint its code now: {_first_line(exc)}") from exc
    if fp.digest == record.fingerprint:
        return
    changes = code_changes(record.code_parts, dict(fp.parts))
    raise _NotCheckable(
        "code changed since: " + (", ".join(changes) or "its fingerprint differs"),
        code_changes=changes,
    )


def _import_class(name: str) -> type:
    """A class the entry's fingerprint carried, as a run would find it now."""
    module_name, _, qualname = name.partition(":")
    try:
        obj: Any = _import_module(module_name, "")
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except Exception as exc:
        raise _NotCheckable(
            f"code changed since: class {name}, which its fingerprint carries, cannot be "
            f"found ({type(exc).__name__}: {_first_line(exc)})",
            code_changes=[f"removed {name}"],
        ) from exc
    if not isinstance(obj, type):
        raise _NotCheckable(f"code changed since: {name} is no longer a class")
    return obj


def code_changes(recorded: dict[str, str], now: dict[str, str]) -> list[str]:
    """`changed code:m:f`, `added const:m:X`, `removed dist:pkg` for each differing part."""
    changes = []
    for name in sorted(set(recorded) | set(now)):
        if name not in now:
            changes.append(f"removed {name}")
        elif name not in recorded:
            changes.append(f"added {name}")
        elif recorded[name] != now[name]:
            changes.append(f"changed {name}" + _dist_versions(name, recorded[name], now[name]))
    return changes


def _dist_versions(name: str, before: str, after: str) -> str:
    if name.startswith(("dist:", "python")):
        return f" ({before} -> {after})"
    return ""


def _materializers(step: Step[Any, Any], record: StepRecord) -> dict[str, Any]:
    found = {}
    for name in record.output_names:
        identity = record.materializers.get(name, "")
        try:
            found[name] = registry.by_identity(identity)
        except MaterializerError as exc:
            raise _NotCheckable(
                f"output {name!r} was written by materializer {identity!r}, which is not "
                "defined now (its VERSION changed, or its module is not imported)"
            ) from exc
    now = [s.name for s in step.outputs]
    if list(record.output_names) != now:
        raise _NotCheckable(
            f"code changed since: its outputs are now {now}, the entry has "
            f"{list(record.output_names)}",
            code_changes=["outputs"],
        )
    return found


def restore_params(record: StepRecord) -> dict[str, Any]:
    """Every recorded parameter value, checked against the digest that made the key."""
    params = {}
    for name in record.params:
        if name not in record.param_values:
            raise _NotCheckable(
                f"parameter {name!r} cannot be restored: its value was not recorded (the "
                "entry predates audits); rerun the pipeline with `zencache run --no-cache` (or "
                "`.run(force=True)`) to record it"
            )
    for name, encoded in record.param_values.items():
        try:
            value = decode_param(encoded)
        except ParameterRestoreError as exc:
            raise _NotCheckable(f"parameter {name!r} cannot be restored: {exc}") from exc
        expected = record.params.get(name, {}).get("hash")
        if expected is not None and hash_value(value) != expected:
            raise _NotCheckable(
                f"parameter {name!r} cannot be restored: its recorded value "
                f"{record.params[name].get('repr', '')} comes back as {_short(value)}, which "
                "hashes differently"
            )
        params[name] = value
    return params


def load_inputs(cache: Cache, step: Step[Any, Any], record: StepRecord) -> dict[str, Any]:
    """The recorded inputs, by content id; a missing one makes the step not checkable."""
    values: dict[str, Any] = {}
    missing: list[str] = []
    problems: list[str] = []
    for name, content_id in sorted(record.inputs.items()):
        artifact = cache.index.get_artifact(content_id)
        try:  # one at a time: a refusal names its input
            values.update(execute.load_inputs(cache.store, {name: artifact}, step.input_types))
        except DamagedInputs as exc:
            missing.append(name)
            if artifact is None:
                kind = "no index record"
            elif isinstance(exc.damaged[name], MissingObjectError):
                kind = "bytes missing"
            else:
                kind = "bytes damaged"
            problems.append(f"{name!r} ({content_id[:8]}: {kind})")
        except ZencacheError as exc:  # refused (pickle), or its materializer is gone
            raise _NotCheckable(
                f"input {name!r} ({content_id[:8]}) cannot be loaded: {_first_line(exc)}"
            ) from exc
    if missing:
        raise _NotCheckable(
            "inputs missing from the cache: "
            + ", ".join(problems)
            + "; rerun the pipeline to recreate them, then audit that run",
            missing_inputs=missing,
        )
    return values


# --- how much an output differs -------------------------------------------------------------


def describe_difference(cache: Cache, recorded_id: ContentId, value: Any) -> dict[str, Any]:
    """For an output whose id differs: how (numpy: max abs difference)."""
    artifact = cache.index.get_artifact(recorded_id)
    if artifact is None:
        return {"difference": "the recorded output is no longer in the cache to compare"}
    try:
        recorded = load_artifact(cache.store, artifact)
    except (ZencacheError, OSError) as exc:
        return {"difference": f"the recorded output cannot be loaded ({_first_line(exc)})"}
    return compare_values(recorded, value)


def compare_values(recorded: Any, now: Any) -> dict[str, Any]:
    if _is_numpy(recorded) and _is_numpy(now):
        return _compare_arrays(recorded, now)
    if type(recorded) is not type(now):
        return {"difference": f"type {type(recorded).__qualname__} is now {type(now).__qualname__}"}
    if isinstance(now, int | float) and not isinstance(now, bool):
        diff = abs(float(now) - float(recorded)) if math.isfinite(float(now)) else math.nan
        text = f"{_short(recorded)} is now {_short(now)}"
        return {
            "difference": text + (f"; abs difference {diff:.6g}" if math.isfinite(diff) else ""),
            "max_abs_diff": diff if math.isfinite(diff) else None,
        }
    return {"difference": f"{_short(recorded)} is now {_short(now)}"}


def _is_numpy(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype")


def _compare_arrays(recorded: Any, now: Any) -> dict[str, Any]:
    import numpy as np  # both values are numpy's already

    a, b = np.asarray(recorded), np.asarray(now)
    if a.shape != b.shape:
        return {"difference": f"shape {a.shape} is now {b.shape}"}
    prefix = f"dtype {a.dtype} is now {b.dtype}; " if a.dtype != b.dtype else ""
    if a.dtype.kind not in "biufc" or b.dtype.kind not in "biufc":
        differing = int(np.count_nonzero(a != b)) if a.dtype == b.dtype else a.size
        return {"difference": f"{prefix}{differing} of {a.size} elements differ"}
    wide = np.complex128 if "c" in (a.dtype.kind + b.dtype.kind) else np.float64
    x, y = a.astype(wide), b.astype(wide)
    with np.errstate(invalid="ignore", over="ignore"):
        same = (x == y) | (np.isnan(x) & np.isnan(y))
        differing = int(a.size - np.count_nonzero(same))
        if differing == 0:
            return {"difference": f"{prefix}equal values, different bytes", "max_abs_diff": 0.0}
        delta = np.abs(np.where(same, 0, x - y))
        worst = float(np.nanmax(delta)) if not np.all(np.isnan(delta)) else math.nan
    text = f"{prefix}{differing} of {a.size} elements differ"
    if math.isfinite(worst):
        return {"difference": f"{text}; max abs difference {worst:.6g}", "max_abs_diff": worst}
    return {"difference": f"{text} (NaN or infinite where the other is not)"}


# --- small things -------------------------------------------------------------------------------


def _not_checkable(reason: str, **details: Any) -> dict[str, Any]:
    return {
        "status": NOT_CHECKABLE,
        "reason": reason,
        "code_changes": list(details.get("code_changes", [])),
        "missing_inputs": list(details.get("missing_inputs", [])),
    }


def _environment() -> dict[str, Any]:
    return asdict(current_environment())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main(sys.argv))
