"""A cache written by someone else: bytes are verified before anything is
deserialized, pickles are refused under ZENCACHE_ALLOW_PICKLE=0 (and only run when
the writer is trusted), and no manifest can make zencache touch a path outside the
folder it restores into.

The attacker here can edit the cache at will (objects and index), so every forged
record below is self-consistent where that is possible: its content id recomputed,
the step entry pointing at it.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from zencache import BaseMaterializer, Cache, pipeline, step
from zencache.core.runs import Run
from zencache.errors import (
    CorruptObjectError,
    MaterializerError,
    PickleRefusedError,
    UnsafePathError,
    ZencacheError,
)
from zencache.materializers.artifacts import artifact_id, load_artifact
from zencache.materializers.builtin import PickleMaterializer
from zencache.materializers.numpy import NumpyMaterializer
from zencache.storage.records import ArtifactRecord, FileEntry

PICKLE = "ZENCACHE_ALLOW_PICKLE"


class Payload:
    """Unpickling this runs code: it creates `marker` (the attack, made visible)."""

    def __init__(self, marker: str, padding: int = 0) -> None:
        self.marker, self.padding = marker, padding

    def __reduce__(self) -> tuple[Any, ...]:
        code = f"import os; os.mkdir({self.marker!r})  # " + "x" * self.padding
        return (exec, (code,))


@step
def features(n: int = 40) -> np.ndarray:
    return np.linspace(0.0, 1.0, n).reshape(-1, 1)


@step
def labels(n: int = 40) -> np.ndarray:
    return (np.arange(n) >= n // 2).astype(np.int64)


@step
def fitted(X: np.ndarray, y: np.ndarray) -> LogisticRegression:
    return LogisticRegression().fit(X, y)


@step
def summary(X: np.ndarray) -> dict:
    return {"rows": int(X.shape[0]), "mean": float(X.mean())}


@step(materializers=PickleMaterializer)
def opaque(marker: str, padding: int = 0) -> Any:
    return Payload(marker, padding)


@step(materializers=PickleMaterializer)
def innocent(size: int = 3000) -> Any:
    return {"numbers": list(range(size))}


@step
def score(model: LogisticRegression, X: np.ndarray, y: np.ndarray) -> float:
    return float(model.score(X, y))


@pipeline
def trained(marker: str = ""):
    X, y = features(), labels()
    return fitted(X=X, y=y), summary(X=X), opaque(marker=marker)


@pipeline
def scored():
    X, y = features(), labels()
    return score(model=fitted(X=X, y=y), X=X, y=y)


def test_allow_pickle_0_refuses_pickle_loads_and_still_loads_numpy_and_builtins(
    cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    run = trained(marker=str(marker)).run(cache=cache)
    assert not marker.exists()  # saving a pickle runs nothing

    monkeypatch.setenv(PICKLE, "0")
    loaded = Run(run.record, cache)  # from the store, not from this run's memory
    assert loaded.steps["summary"].output() == {"rows": 40, "mean": 0.5}
    np.testing.assert_array_equal(loaded.steps["features"].output(), np.linspace(0, 1, 40)[:, None])
    with pytest.raises(PickleRefusedError) as caught:
        loaded.steps["fitted"].output()
    message = str(caught.value)
    assert "SklearnMaterializer uses pickle" in message and f"{PICKLE}=0" in message
    assert "trust" in message
    with pytest.raises(PickleRefusedError, match="PickleMaterializer"):
        loaded.steps["opaque"].output()
    assert not marker.exists()

    # Hits load nothing, so a fully cached run still works; a step that needs the
    # model as input fails, naming itself and the setting.
    again = trained(marker=str(marker)).run(cache=cache)
    assert {s.status for s in again.steps.values()} == {"cached"}
    with pytest.raises(PickleRefusedError, match=r"^step 'score': .*ZENCACHE_ALLOW_PICKLE=0"):
        scored().run(cache=cache)
    assert not marker.exists()

    # Trusting the writer (the default) is exactly that: its pickles run.
    monkeypatch.delenv(PICKLE)
    Run(run.record, cache).steps["opaque"].output()
    assert marker.is_dir()


def test_allow_pickle_0_in_a_fresh_process(cache: Cache, python: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    trained(marker=str(marker)).run(cache=cache)
    cache.close()
    read = f"""
import sys; sys.path.insert(0, {str(Path(__file__).parent)!r})
import test_untrusted as t
from zencache import Cache
from zencache.errors import PickleRefusedError
cache = Cache({str(cache.path)!r})
run = t.trained(marker={str(marker)!r}).run(cache=cache)
print(run.steps["summary"].output()["rows"])
for name in ("fitted", "opaque"):
    try:
        run.steps[name].output()
    except PickleRefusedError as exc:
        print("refused", name)
"""
    done = python.run(read, env={PICKLE: "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["40", "refused", "fitted", "refused", "opaque"]
    assert not marker.exists()


def _record(cache: Cache, content_id: str) -> ArtifactRecord:
    record = cache.index.get_artifact(content_id)
    assert record is not None
    return record


def _put(cache: Cache, record: ArtifactRecord, key: str | None = None) -> None:
    cache.index.write([("artifacts", (key or record.content_id).encode(), record.encode())])


def test_a_swapped_chunk_list_is_caught_before_anything_is_unpickled(
    cache: Cache, tmp_path: Path
) -> None:
    """The attacker points an innocent artifact's record at a payload's chunks."""
    marker = tmp_path / "pwned"

    @pipeline
    def both():
        return innocent(), opaque(marker=str(marker), padding=20_000)

    run = both().run(cache=cache)
    good = _record(cache, run.steps["innocent"].outputs["output"])
    evil = _record(cache, run.steps["opaque"].outputs["output"])
    assert all(f.chunks for f in (*good.files.values(), *evil.files.values()))  # in objects/
    swapped = dataclasses.replace(good, files=dict(evil.files))
    _put(cache, swapped)

    with pytest.raises(CorruptObjectError, match="does not match its id"):
        Run(run.record, cache).steps["innocent"].output()
    assert not marker.exists()

    @step
    def count(values: Any) -> int:
        return len(values["numbers"])

    @pipeline
    def counted():
        return count(values=innocent())

    assert counted().run(cache=cache).output() == 3000  # re-executed, never unpickled
    assert not marker.exists()


def test_a_flipped_byte_is_caught_before_the_materializer_sees_the_bytes(
    cache: Cache, flip_byte: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    @step
    def wide(n: int = 100_000) -> np.ndarray:
        return np.arange(n, dtype=np.float64)

    @pipeline
    def p():
        return wide()

    run = p().run(cache=cache)
    record = _record(cache, run.steps["wide"].outputs["output"])
    victim = sorted(record.object_ids())[-1]
    flip_byte(cache.store.path(victim), 10)
    seen: list[int] = []
    real = NumpyMaterializer.restore
    monkeypatch.setattr(
        NumpyMaterializer, "restore", lambda self, files, t: seen.append(1) or real(self, files, t)
    )
    with pytest.raises(CorruptObjectError, match=victim):
        Run(run.record, Cache(cache.path)).steps["wide"].output()
    assert seen == []


# --- paths in manifests -----------------------------------------------------------------------------


class FilesMaterializer(BaseMaterializer):
    """A file-based user materializer: the path zencache lays files out for."""

    ASSOCIATED_TYPES = ()

    def save(self, data: Any) -> None:
        (Path(self.uri) / "data.txt").write_text(data)

    def load(self, data_type: type) -> Any:
        return (Path(self.uri) / "data.txt").read_text()


@step(materializers=FilesMaterializer)
def text() -> str:
    return "hello " * 2000  # large enough for its own objects


def test_a_manifest_naming_a_path_outside_the_cache_is_refused_when_its_id_is_stale(
    cache: Cache,
) -> None:
    @pipeline
    def p():
        return text()

    run = p().run(cache=cache)
    record = _record(cache, run.steps["text"].outputs["output"])
    (entry,) = record.files.values()
    _put(cache, dataclasses.replace(record, files={"../../etc/passwd": entry}))
    with pytest.raises(CorruptObjectError, match="does not match its id"):
        Run(run.record, cache).steps["text"].output()


@pytest.mark.parametrize(
    "name",
    [
        "../escaped",
        "a/../../escaped",
        "/tmp/zencache-escaped-abs",
        "a\\..\\..\\escaped",
        "a\x00b",
        "",
    ],
)
def test_a_forged_manifest_cannot_write_outside_the_restore_folder(
    cache: Cache, tmp_path: Path, name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Self-consistent forgery: new id recomputed, step entry repointed."""
    monkeypatch.chdir(tmp_path)

    @pipeline
    def p():
        return text()

    run = p().run(cache=cache)
    old_id = run.steps["text"].outputs["output"]
    record = _record(cache, old_id)
    (entry,) = record.files.values()
    files = {name: entry}
    forged = dataclasses.replace(
        record, content_id=artifact_id(record.materializer, files), files=files
    )
    _put(cache, forged)
    key = run.steps["text"].key
    step_record = cache.index.get_step(key)
    assert step_record is not None
    repointed = dataclasses.replace(step_record, output_ids=(forged.content_id,))
    cache.index.write([("steps", key.encode(), repointed.encode())])

    before = set(Path("/tmp").iterdir())
    with pytest.raises(UnsafePathError, match="would escape its folder"):
        load_artifact(cache.store, forged)

    @step
    def shout(value: str) -> str:
        return value.upper()

    @pipeline
    def q():
        return shout(value=text())

    with pytest.raises(UnsafePathError, match=r"^step 'shout': artifact file name"):
        q().run(cache=cache)
    assert set(Path("/tmp").iterdir()) == before
    assert not (tmp_path / "escaped").exists() and not Path("/tmp/zencache-escaped-abs").exists()


def test_a_materializer_that_writes_a_link_out_of_its_folder_is_refused(cache: Cache) -> None:
    class Linker(BaseMaterializer):
        def save(self, data: Any) -> None:
            os.symlink("/etc/passwd", Path(self.uri) / "data.txt")

        def load(self, data_type: type) -> Any:
            return (Path(self.uri) / "data.txt").read_text()

    @step(materializers=Linker)
    def linked() -> str:
        return "x"

    @pipeline
    def p():
        return linked()

    with pytest.raises(UnsafePathError, match=r"step 'linked': .*link to /etc/passwd"):
        p().run(cache=cache)
    assert cache.index.count("steps") == 0


def test_an_untrusted_type_name_is_not_imported(
    cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The type name is not part of an artifact's id, and importing a module runs it:
    under ZENCACHE_ALLOW_PICKLE=0 a module the cache names is never imported."""
    marker = tmp_path / "imported"
    (tmp_path / "zc_untrusted_probe.py").write_text(
        f"import os\nos.mkdir({str(marker)!r})\nclass Thing: pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "zc_untrusted_probe", raising=False)

    @pipeline
    def p():
        return summary(X=features())

    run = p().run(cache=cache)
    record = _record(cache, run.steps["summary"].outputs["output"])
    _put(cache, dataclasses.replace(record, type_name="zc_untrusted_probe:Thing"))
    monkeypatch.setenv(PICKLE, "0")
    assert Run(run.record, cache).steps["summary"].output() == {"rows": 40, "mean": 0.5}
    assert not marker.exists() and "zc_untrusted_probe" not in sys.modules


def test_garbage_records_are_zencache_errors_and_a_run_rewrites_them(cache: Cache) -> None:
    """Garbage where a record should be: a ZencacheError, never a decoder's traceback;
    a run that needs the value re-executes its producer and rewrites the record."""
    run = trained().run(cache=cache)
    content_id = run.steps["summary"].outputs["output"]
    garbage = [b"", b"\x01{", b"\x01[]", b'\x01{"content_id": 1}', b"\x09" + b"x" * 40]
    for value in garbage:
        cache.index.write([("artifacts", content_id.encode(), value)])
        with pytest.raises(ZencacheError):
            Run(run.record, cache).steps["summary"].output()

    @step
    def rows(info: dict) -> int:
        return info["rows"]

    @pipeline
    def counted():
        return rows(info=summary(X=features()))

    assert counted().run(cache=cache).output() == 40
    assert _record(cache, content_id).content_id == content_id


@pytest.mark.parametrize(
    ("header", "match"),
    [
        (b'{"dtype":"|O","shape":[2],"order":"C","scalar":false}', "holds Python objects"),
        (b'{"dtype":"<f8","shape":[99999999],"order":"C","scalar":false}', "bytes for an array"),
    ],
    ids=["object dtype", "shape larger than the bytes"],
)
def test_a_forged_numpy_header_never_unpickles_or_overreads(
    cache: Cache, header: bytes, match: str
) -> None:
    """The numpy materializer reads a raw buffer, never np.load with pickles: a forged
    header asking for Python objects (or more bytes than there are) is refused."""

    @step
    def pair() -> np.ndarray:
        return np.array([1.0, 2.0])

    @pipeline
    def p():
        return pair()

    run = p().run(cache=cache)
    record = _record(cache, run.steps["pair"].outputs["output"])
    files = {**record.files, "array.json": FileEntry(len(header), inline=header)}
    forged = dataclasses.replace(
        record, content_id=artifact_id(record.materializer, files), files=files
    )
    with pytest.raises(MaterializerError, match=match):
        load_artifact(cache.store, forged)


def test_a_forged_numpy_scalar_in_a_builtin_value_is_a_clear_error(cache: Cache) -> None:
    @step
    def small() -> dict:
        return {"x": 1}

    @pipeline
    def p():
        return small()

    run = p().run(cache=cache)
    record = _record(cache, run.steps["small"].outputs["output"])
    ((name, _),) = record.files.items()
    body = b'{"d":{"x":{"n":["|O","AAAAAAAAAAA="]}}}'
    files = {name: FileEntry(len(body), inline=body)}
    forged = dataclasses.replace(
        record, content_id=artifact_id(record.materializer, files), files=files
    )
    with pytest.raises(MaterializerError, match="could not load artifact"):
        load_artifact(cache.store, forged)


@pytest.mark.parametrize("where", ["../../escaped.txt", "../escaped.txt", "/abs"])
def test_a_materializer_that_writes_outside_its_folder_fails_the_step(
    cache: Cache, tmp_path: Path, where: str
) -> None:
    """Its files never reach the store: recorded, they would be an empty artifact with one
    id for every value, and a later load would return another value."""
    outside = tmp_path / "outside"
    outside.mkdir()

    class Escaper(BaseMaterializer):
        def save(self, data: Any) -> None:
            path = (
                os.path.join(self.uri, where)
                if where != "/abs"
                else str(outside / f"abs-{data}.txt")
            )
            with open(path, "w") as fh:
                fh.write(data)

        def load(self, data_type: type) -> Any:
            return Path(self.uri, where).read_text()

    @step(materializers=Escaper)
    def emit(value: str) -> str:
        return value

    @pipeline
    def p(value: str = "a"):
        return emit(value=value)

    for value in ("a", "b"):
        with pytest.raises(MaterializerError, match=r"step 'emit': .*Escaper.*") as info:
            p(value=value).run(cache=cache)
        assert "self.uri" in str(info.value)
        if where != "/abs":
            assert "escaped.txt" in str(info.value)
    assert cache.index.count("steps") == 0
    assert cache.index.count("artifacts") == 0
