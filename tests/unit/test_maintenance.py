"""Cache maintenance on real pipelines and a real cache, in-process: stats add up,
gc keeps what is referenced and removes what is not (with its grace period),
verify finds damage and repair makes the next run re-execute exactly the steps
that lost their outputs, clear, ls, lineage and run lookup."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from zencache_testing import check_execution

from zencache import Cache, pipeline, step
from zencache import maintenance as m
from zencache.core.runs import Run
from zencache.errors import CacheError, UsageError
from zencache.storage.records import ArtifactRecord

# 2000 float64 = 16 000 bytes: above the inline limit, one chunk per array.
N = 2000
DAY = 86400.0


@step
def source(n: int = N, seed: int = 0) -> np.ndarray:
    return np.arange(n, dtype=np.float64) + seed


@step
def double(x: np.ndarray) -> np.ndarray:
    return x * 2


@step
def total(x: np.ndarray) -> float:
    return float(x.sum())


@step
def tweak(x: np.ndarray) -> np.ndarray:
    y = x.copy()
    y[-1] += 1  # only the last chunk differs from x's
    return y


@pipeline
def chain(n: int = N, seed: int = 0):
    return total(x=double(x=source(n=n, seed=seed)))


@pipeline
def shared(n: int = 20_000):
    return tweak(x=source(n=n))


def object_of(run: Run, step_name: str, cache: Cache) -> str:
    """The one object file holding a step's (single-chunk) array output."""
    record = cache.index.get_artifact(run.steps[step_name].outputs["output"])
    assert record is not None
    (object_id,) = record.object_ids()
    return object_id


def age(path: Path, seconds: float) -> None:
    old = time.time() - seconds
    os.utime(path, (old, old))


def object_ids(cache: Cache) -> set[str]:
    return {o for o, _ in cache.store.iter_objects()}


# --- stats ------------------------------------------------------------------------------------


def test_stats_numbers_add_up(cache: Cache) -> None:
    chain().run(cache=cache)
    chain().run(cache=cache)
    shared().run(cache=cache)
    garbage = cache.store.put(b"g" * 5000)
    s = m.stats(cache)

    artifacts = [ArtifactRecord.decode(v) for _, v in cache.index.items("artifacts")]
    files = list(cache.store.iter_objects())
    assert (s.step_entries, s.runs, s.artifacts) == (5, 3, len(artifacts))
    assert s.objects == len(files) and s.object_bytes == sum(size for _, size in files)
    assert s.objects == s.referenced_objects + s.unreferenced_objects
    assert s.object_bytes == s.referenced_object_bytes + s.unreferenced_object_bytes
    assert s.unreferenced_objects == 1
    assert s.unreferenced_object_bytes == cache.store.path(garbage).stat().st_size
    assert s.logical_bytes == sum(a.size for a in artifacts)
    assert s.stored_bytes == s.referenced_object_bytes + s.inline_bytes
    assert s.dedupe_ratio == pytest.approx(s.logical_bytes / s.stored_bytes, rel=1e-3)
    # source(20000) and tweak's output share their first 128 KiB chunk.
    assert s.dedupe_ratio > 1.3
    assert s.missing_objects == 0 and s.temporary_files == 0
    assert s.to_json()["objects"] == s.objects


def test_commands_refuse_to_create_a_missing_cache(tmp_path: Path) -> None:
    missing = Cache(tmp_path / "nothing-here")
    for call in (m.stats, m.verify, m.gc, m.ls, m.list_runs):
        with pytest.raises(CacheError, match=r"no cache at .*nothing-here; run a pipeline first"):
            call(missing)
    assert not missing.path.exists()


# --- gc ----------------------------------------------------------------------------------------


def test_gc_without_options_keeps_entries_and_deletes_only_old_unreferenced_objects(
    cache: Cache,
) -> None:
    run = chain().run(cache=cache)
    referenced = object_ids(cache)
    old = cache.store.put(b"old garbage" * 500)
    fresh = cache.store.put(b"fresh garbage" * 500)
    age(cache.store.path(old), DAY)
    stale_tmp = cache.store.root / old[:2] / ".tmp-1-dead"
    live_tmp = cache.store.root / old[:2] / ".tmp-2-live"
    stale_tmp.write_bytes(b"x")
    live_tmp.write_bytes(b"y")
    age(stale_tmp, 2 * 3600)

    dry = m.gc(cache, dry_run=True)
    assert (dry.objects, dry.spared_objects, dry.temporary_files) == (1, 1, 1)
    assert object_ids(cache) == referenced | {old, fresh} and stale_tmp.exists()

    report = m.gc(cache)
    assert (report.objects, report.spared_objects, report.temporary_files) == (1, 1, 1)
    assert report.runs == report.steps == report.artifacts == ()
    assert object_ids(cache) == referenced | {fresh}
    assert not stale_tmp.exists() and live_tmp.exists()
    assert m.gc(cache, grace=0).objects == 1  # the fresh one, once no grace protects it
    assert object_ids(cache) == referenced
    assert not m.verify(cache).damaged
    check_execution(chain().run(cache=cache), executed=[], cached=list(run.steps))


def test_gc_spares_an_old_object_that_a_run_stores_again(cache: Cache) -> None:
    # A put that dedupes against an old unreferenced object freshens it, so a gc
    # running before the run commits its reference cannot delete it.
    assert cache.index is not None  # creates the cache
    data = b"about to be referenced again" * 300
    object_id = cache.store.put(data)
    age(cache.store.path(object_id), DAY)
    cache.store.put(data)
    report = m.gc(cache)
    assert report.spared_objects == 1 and object_id in object_ids(cache)


def test_gc_keep_last_removes_old_runs_and_what_only_they_used(cache: Cache) -> None:
    first = chain(seed=0).run(cache=cache)
    second = chain(seed=1).run(cache=cache)
    other = shared().run(cache=cache)  # another pipeline: its own newest run stays
    kept_objects = object_ids(cache) - {
        object_of(first, "source", cache),
        object_of(first, "double", cache),
    }

    # Everything is younger than the default grace period: runs go, entries stay.
    young = m.gc(cache, keep_last=1, dry_run=True)
    assert young.runs == (first.run_id,) and young.steps == () and young.objects == 0

    report = m.gc(cache, keep_last=1, grace=0)
    assert report.runs == (first.run_id,)
    assert {s.name for s in report.steps} == {"source", "double", "total"}
    assert {s.key for s in report.steps} == {s.key for s in first.steps.values()}
    assert len(report.artifacts) == 3 and report.objects == 2
    assert object_ids(cache) == kept_objects
    assert cache.index.get_run(second.run_id) is not None
    assert cache.index.get_run(other.run_id) is not None
    assert not m.verify(cache).damaged

    check_execution(chain(seed=1).run(cache=cache), executed=[], cached=list(second.steps))
    assert chain(seed=1).run(cache=cache).output() == second.output()
    check_execution(
        chain(seed=0).run(cache=cache), executed=["source", "double", "total"], cached=[]
    )


def test_gc_keeps_the_latest_entry_of_every_step_even_beyond_keep_last(cache: Cache) -> None:
    chain().run(cache=cache)
    report = m.gc(cache, keep_last=0, grace=0)
    assert len(report.runs) == 1 and report.steps == () and report.objects == 0
    assert m.count_runs(cache) == 0
    check_execution(chain().run(cache=cache), executed=[], cached=["source", "double", "total"])


def test_gc_older_than_and_keep_last_together_always_keep_the_newest(cache: Cache) -> None:
    for seed in range(3):
        chain(seed=seed).run(cache=cache)
    assert m.gc(cache, older_than="1d", dry_run=True).runs == ()  # all younger than a day
    report = m.gc(cache, keep_last=2, older_than=0.0, dry_run=True)
    assert len(report.runs) == 1 and report.kept_runs == 2
    with pytest.raises(UsageError, match="keep-last"):
        m.gc(cache, keep_last=-1)


# --- verify and repair -------------------------------------------------------------------------


def test_verify_finds_a_flipped_byte_and_a_deleted_object(cache: Cache, flip_byte: Any) -> None:
    run = chain().run(cache=cache)
    assert not m.verify(cache).damaged
    corrupt = object_of(run, "source", cache)
    missing = object_of(run, "double", cache)
    flip_byte(cache.store.path(corrupt), 10)
    cache.store.path(missing).unlink()

    report = m.verify(cache)
    assert report.damaged and not report.ok and report.repair is None
    problems = {d.object_id: d.problem for d in report.objects}
    assert problems == {corrupt: "corrupt", missing: "missing"}
    by_object = {d.object_id: {s.name for s in d.steps} for d in report.objects}
    assert by_object == {corrupt: {"source"}, missing: {"double"}}
    assert {s.entry.name for s in report.steps} == {"source", "double"}
    assert {a.content_id for a in report.artifacts} == {
        run.steps["source"].outputs["output"],
        run.steps["double"].outputs["output"],
    }
    assert report.to_json()["objects"][0]["problem"] in ("corrupt", "missing")


def test_repair_drops_dependents_and_the_next_run_reexecutes_exactly_those(
    cache: Cache, flip_byte: Any
) -> None:
    run = chain().run(cache=cache)
    damaged = object_of(run, "double", cache)
    flip_byte(cache.store.path(damaged), 3)

    report = m.verify(cache, repair=True)
    assert report.damaged and report.ok and report.repair is not None
    assert [s.name for s in report.repair.steps] == ["double"]
    assert report.repair.artifacts == (run.steps["double"].outputs["output"],)
    assert report.repair.objects == (damaged,)
    assert not cache.store.path(damaged).exists()
    assert not m.verify(cache).damaged  # what is left is consistent

    # A fresh handle, as the next process would have: it knows nothing of the damage.
    again = chain().run(cache=Cache(cache.path))
    check_execution(again, executed=["double"], cached=["source", "total"])
    assert again.output() == run.output()
    assert not m.verify(cache).damaged


def test_repair_of_a_missing_source_object_reexecutes_only_the_source(cache: Cache) -> None:
    run = chain().run(cache=cache)
    cache.store.path(object_of(run, "source", cache)).unlink()
    report = m.verify(cache, repair=True)
    assert [s.name for s in report.repair.steps] == ["source"]  # type: ignore[union-attr]
    again = chain().run(cache=Cache(cache.path))
    # source reproduces the same bytes, so early cutoff keeps its consumers hits.
    check_execution(again, executed=["source"], cached=["double", "total"])
    assert not m.verify(cache).damaged


def test_verify_reports_a_corrupt_unreferenced_object_and_repair_deletes_it(
    cache: Cache, flip_byte: Any
) -> None:
    chain().run(cache=cache)
    stray = cache.store.put(b"stray" * 1000)
    flip_byte(cache.store.path(stray))
    report = m.verify(cache, repair=True)
    assert [(d.object_id, d.steps) for d in report.objects] == [(stray, ())]
    assert report.repair is not None and report.repair.objects == (stray,)
    assert report.repair.steps == () and not m.verify(cache).damaged


# --- clear and ls ----------------------------------------------------------------------------


def test_clear_one_step_makes_only_it_rerun(cache: Cache) -> None:
    run = chain().run(cache=cache)
    report = m.clear(cache, "double")
    assert [s.name for s in report.steps] == ["double"]
    assert report.latest == ("chain/double",)
    # double's output is still an input recorded by total's entry: it stays.
    assert report.artifacts == 0
    assert m.ls(cache, "double") == [] and len(m.ls(cache)) == 2
    check_execution(chain().run(cache=cache), executed=["double"], cached=["source", "total"])

    report = m.clear(cache, "total")
    assert report.artifacts == 1  # total's output: nothing else names it
    assert cache.index.get_artifact(run.steps["total"].outputs["output"]) is None

    with pytest.raises(UsageError, match=r"no step entries match 'nope'.*double, source"):
        m.clear(cache, "nope")


def test_clear_everything_removes_entries_and_objects(cache: Cache) -> None:
    chain().run(cache=cache)
    report = m.clear(cache)
    assert len(report.steps) == 3 and report.runs == 1 and report.objects == 2
    s = m.stats(cache)
    assert (s.step_entries, s.artifacts, s.runs, s.objects) == (0, 0, 0, 0)
    check_execution(chain().run(cache=cache), executed=["source", "double", "total"], cached=[])


def test_ls_lists_entries_with_outputs_and_sizes(cache: Cache) -> None:
    run = chain().run(cache=cache)
    entries = m.ls(cache)
    assert [e.name for e in entries] == ["double", "source", "total"]
    by_name = {e.name: e for e in entries}
    assert by_name["source"].key == run.steps["source"].key
    assert by_name["source"].outputs[0].content_id == run.steps["source"].outputs["output"]
    assert by_name["source"].size > N * 8  # the array plus its header
    assert by_name["source"].step.endswith(":source")
    assert [e.name for e in m.ls(cache, "total")] == ["total"]
    assert m.ls(cache, "no-such-step") == []


# --- lineage and runs -----------------------------------------------------------------------------


def test_lineage_of_a_three_step_chain_reaches_the_source(cache: Cache) -> None:
    run = chain(seed=5).run(cache=cache)
    output_id = run.steps["total"].outputs["output"]
    for ref in (output_id, output_id[:8], "latest:total", "latest:total.output"):
        found = m.lineage(cache, ref)
        root = found.root
        assert root.name == "total" and root.key == run.steps["total"].key
        (x,) = root.inputs
        assert x.content_id == run.steps["double"].outputs["output"]
        assert x.producer is not None and x.producer.name == "double" and x.output == "output"
        (y,) = x.producer.inputs
        assert y.producer is not None and y.producer.name == "source"
        assert y.producer.params == {"n": repr(N), "seed": "5"}
        assert y.producer.inputs == [] and y.producer.fingerprint
        assert y.producer.run_id == run.run_id
    assert m.lineage(cache, output_id).content_id == output_id
    assert m.lineage(cache, "latest:total").content_id is None
    tree = m.lineage(cache, run.run_id[:20] + ":double").to_json()
    assert tree["root"]["inputs"][0]["producer"]["name"] == "source"


def test_lineage_errors_say_what_to_pass(cache: Cache) -> None:
    chain().run(cache=cache)
    with pytest.raises(UsageError, match="at least 8 hex digits"):
        m.lineage(cache, "abc")
    with pytest.raises(UsageError, match="no artifact"):
        m.lineage(cache, "0" * 32)
    with pytest.raises(UsageError, match="has no step 'nope'; its steps are: source"):
        m.lineage(cache, "latest:nope")
    with pytest.raises(UsageError, match="has no output 'other'"):
        m.lineage(cache, "latest:total.other")


def test_resolve_run_by_latest_id_prefix_and_suffix(cache: Cache) -> None:
    assert cache.index is not None  # creates the cache
    with pytest.raises(UsageError, match="no runs recorded"):
        m.resolve_run(cache, "latest")
    first = chain(seed=0).run(cache=cache)
    second = chain(seed=1).run(cache=cache)
    assert m.resolve_run(cache, "latest").run_id == second.run_id
    assert m.resolve_run(cache, first.run_id).run_id == first.run_id
    assert m.resolve_run(cache, first.run_id.rpartition("-")[2]).run_id == first.run_id
    with pytest.raises(UsageError, match="ambiguous"):
        m.resolve_run(cache, first.run_id[:4])
    with pytest.raises(UsageError, match="no run matches 'zzz'"):
        m.resolve_run(cache, "zzz")
    assert [r.run_id for r in m.list_runs(cache)] == [second.run_id, first.run_id]
    assert [r.run_id for r in m.list_runs(cache, limit=1)] == [second.run_id]
    details = m.run_details(cache, "latest").to_json()
    assert details["environment"]["python"]
    entry = details["steps"][0]["entry"]
    assert entry["fingerprint"] and entry["code_parts"] and entry["params"]["seed"]["repr"] == "1"
    assert entry["outputs"] == details["steps"][0]["outputs"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("7d", 7 * DAY), ("12h", 43200), ("30m", 1800), ("45s", 45), ("2w", 14 * DAY),
     ("1d12h", 1.5 * DAY), ("1.5h", 5400), (" 10M ", 600)],
)  # fmt: skip
def test_durations(text: str, seconds: float) -> None:
    assert m.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "7", "d", "7x", "-1d", "1d 2h"])
def test_bad_durations_say_how_to_write_one(text: str) -> None:
    with pytest.raises(UsageError, match=r"invalid duration .*e\.g\. 7d, 12h, 30m"):
        m.parse_duration(text)


def test_a_kept_step_keeps_the_environment_it_was_made_in_after_its_run_is_gone(
    cache: Cache,
) -> None:
    from zencache.fingerprint.environment import current_environment
    from zencache.inspection.audit import _producing_env

    first = chain(seed=5).run(cache=cache)
    env_id = current_environment().env_id
    entry = cache.index.get_step(first.steps["source"].key)
    assert entry is not None and entry.env_id == env_id
    assert cache.index.get_env(env_id) is not None  # stored with the first entry naming it

    # A fabricated later run in another environment hits every step; gc then drops
    # the run that executed them, and with it the only run naming env_id.
    second = chain(seed=5).run(cache=cache)
    record = cache.index.get_run(second.run_id)
    assert record is not None
    other = dataclasses.replace(record, env_id="f" * 32)
    cache.index.write([("runs", second.run_id.encode(), other.encode())])
    report = m.gc(cache, keep_last=1, grace=0)
    assert report.runs == (first.run_id,)
    assert cache.index.get_env(env_id) is not None  # a kept step entry names it
    step_run = other.steps[0]
    assert step_run.status == "cached"
    assert _producing_env(cache, other, step_run, entry) == env_id
    # An entry of an older version names none: its run's, which gc removed here.
    assert _producing_env(cache, other, step_run, dataclasses.replace(entry, env_id="")) == ""
