"""status.py in-process: cached / stale with reasons / new, computed from the index
alone, and the explain breakdown; the reasons are data (enums, structured changes)
and cli/phrasing.py words them. Code edits need fresh interpreters: they are
covered by tests/e2e/test_cli_pipeline.py."""

from __future__ import annotations

import pytest

from zencache import Cache, pipeline, step
from zencache.cli.phrasing import (
    EARLY_CUTOFF,
    change_text,
    describe_part,
    explanation_json,
    reason_lines,
    status_json,
)
from zencache.errors import UsageError
from zencache.inspection.status import (
    Change,
    ChangeKind,
    ChangeType,
    Status,
    explain,
    pipeline_status,
)


@step
def load(n: int = 3) -> list:
    return list(range(n))


@step
def total(xs: list, verbose: bool = False) -> int:
    return sum(xs)


@step(ignore=("verbose",))
def quiet_total(xs: list, verbose: bool = False) -> int:
    return sum(xs)


@step(cache=False)
def clock() -> int:
    return 0


@pipeline
def summed(n: int = 3):
    return total(xs=load(n=n))


@pipeline
def with_clock(n: int = 3):
    clock()
    return quiet_total(xs=load(n=n), verbose=n > 5)


def statuses(instance, cache: Cache) -> dict[str, tuple[str, tuple[str, ...]]]:
    return {
        s.step: (s.status, tuple(reason_lines(s.reasons))) for s in pipeline_status(instance, cache)
    }


def test_new_without_a_cache_and_creates_none(cache: Cache) -> None:
    assert statuses(summed(), cache) == {"load": ("new", ()), "total": ("new", ())}
    assert not cache.path.exists()


def test_cached_after_a_run_with_the_keys_the_run_used(cache: Cache) -> None:
    run = summed().run(cache=cache)
    result = pipeline_status(summed(), cache)
    assert [(s.step, s.status, s.reasons) for s in result] == [
        ("load", "cached", ()),
        ("total", "cached", ()),
    ]
    assert [s.key for s in result] == [run.steps["load"].key, run.steps["total"].key]
    assert status_json(result[0]) == {"step": "load", "status": "cached", "reasons": []}
    assert result[0].status is Status.CACHED


def test_parameter_change_and_the_upstream_that_will_rerun(cache: Cache) -> None:
    summed().run(cache=cache)
    result = pipeline_status(summed(n=4), cache)
    assert reason_lines(result[0].reasons) == ["parameter n: 3 -> 4"]
    assert result[1].status == "stale" and result[1].key is None
    assert reason_lines(result[1].reasons) == [
        f"input xs: upstream load will rerun ({EARLY_CUTOFF})"
    ]
    # The same as data: which ingredient, what happened to it, before and after.
    (change,) = result[0].changes
    assert (change.kind, change.type, change.name) == (
        ChangeKind.PARAMETER,
        ChangeType.CHANGED,
        "n",
    )
    assert (change.before, change.after) == ("3", "4")
    (rerun,) = result[1].reasons
    assert rerun.change.type is ChangeType.UPSTREAM_RERUNS and rerun.change.upstream == "load"


def test_input_content_changed_when_the_upstream_is_cached(cache: Cache) -> None:
    four = summed(n=4).run(cache=cache)
    summed(n=3).run(cache=cache)  # the latest keys now belong to n=3
    cache.index.write([("steps", four.steps["total"].key.encode(), None)])
    assert statuses(summed(n=4), cache) == {
        "load": ("cached", ()),
        "total": ("stale", ("input xs: content changed (from load)",)),
    }


def test_a_removed_entry_says_so(cache: Cache) -> None:
    run = summed().run(cache=cache)
    cache.index.write([("steps", run.steps["total"].key.encode(), None)])
    status, reasons = statuses(summed(), cache)["total"]
    assert status == "stale"
    assert reasons[0].startswith(f"its last result (key {run.steps['total'].key[:12]})")


def test_cache_false_and_ignored_parameters(cache: Cache) -> None:
    with_clock().run(cache=cache)
    assert statuses(with_clock(), cache) == {
        "clock": ("stale", ("cache=False: always executes",)),
        "load": ("cached", ()),
        "quiet_total": ("cached", ()),
    }
    assert statuses(with_clock(n=6), cache)["load"] == ("stale", ("parameter n: 3 -> 6",))


def test_explain_breakdown_and_diff(cache: Cache) -> None:
    summed().run(cache=cache)
    e = explain(summed(n=4), cache, "load")
    data = explanation_json(e)
    assert data["identity"].endswith(":load") and data["status"] == "stale"
    assert data["params"]["n"]["repr"] == "4"
    assert any(
        part.startswith("code:") and part.endswith(":load") for part in data["code"]["parts"]
    )
    assert data["code"]["digest"] == data["code"]["fingerprint"]
    assert data["outputs"][0]["name"] == "output"
    assert data["changes"][0]["name"] == "n"
    assert data["previous"]["key"] != data["key"]
    downstream = explanation_json(explain(summed(n=4), cache, "total"))
    assert downstream["key"] is None
    assert downstream["inputs"] == {"xs": {"from": "load.output", "content_id": None}}


def test_explain_of_an_unknown_step_lists_the_steps(cache: Cache) -> None:
    with pytest.raises(UsageError, match="has no step 'nope'; its steps are load, total"):
        explain(summed(), cache, "nope")


@pytest.mark.parametrize(
    ("part", "old", "new", "phrase"),
    [
        ("python", "3.11", "3.12", "Python 3.11 -> 3.12"),
        ("dist:numpy", "numpy==1.26.0", "numpy==2.0.0", "package numpy 1.26.0 -> 2.0.0"),
        ("dist:numpy", None, "numpy==2.0.0", "now uses package numpy==2.0.0"),
        ("dist:numpy", "numpy==2.0.0", None, "no longer uses package numpy==2.0.0"),
        ("code:gone.module:fit", "a", "b", "helper `fit` in module gone.module"),
        ("code:gone.module:fit", None, "b", "now uses helper `fit` in module gone.module"),
        ("code:m:Model.fit", "a", "b", "method `Model.fit` in module m"),
        ("code:m:f.<locals>.g", "a", "b", "nested function `f.<locals>.g` in module m"),
        ("const:m:LR", "a", "b", "constant `LR` in module m"),
        ("const:m:fit(lr=)", "a", "b", "default of parameter `lr` of `fit` in module m"),
        ("const:json", "a", "b", "module `json`"),
    ],
)
def test_fingerprint_parts_read_as_phrases(part: str, old, new, phrase: str) -> None:
    assert describe_part(part, old, new) == phrase


def test_explain_of_a_cached_step_diffs_against_its_last_other_key(cache: Cache) -> None:
    summed(n=3).run(cache=cache)
    summed(n=4).run(cache=cache)
    e = explain(summed(n=3), cache, "load")
    assert e.status.status == "cached" and e.status.reasons == ()
    assert [change_text(c) for c in e.changes] == ["parameter n: 4 -> 3"]
    assert e.previous is not None and e.previous["run_id"]
    same = explain(summed(n=3), cache, "total")
    assert same.status.status == "cached"
    assert same.previous is not None and same.previous["key"] != same.key
    assert [change_text(c) for c in same.changes] == ["input xs: content changed"]


def _change(kind: ChangeKind, how: ChangeType, **fields: object) -> Change:
    return Change(kind, how, "fit", **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("change", "text"),
    [
        (
            _change(ChangeKind.IDENTITY, ChangeType.CHANGED, before="m:a", after="m:b"),
            "code changed: fit now runs m:b (was m:a)",
        ),
        (
            _change(
                ChangeKind.CODE,
                ChangeType.CHANGED,
                name="version",
                before="version:1",
                after="version:2",
            ),
            "code pinned: version 1 -> 2",
        ),
        (
            _change(
                ChangeKind.CODE, ChangeType.PINNED, name="version", before="abc", after="version:2"
            ),
            "code pinned: version 2 (was fingerprinted from its source)",
        ),
        (
            _change(
                ChangeKind.CODE,
                ChangeType.UNPINNED,
                name="version",
                before="version:1",
                after="abc",
            ),
            "code no longer pinned (was version 1): fingerprinted from source",
        ),
        (
            _change(ChangeKind.CODE, ChangeType.FORMAT_CHANGED, before="a" * 20, after="b" * 20),
            f"code changed: fit (fingerprint {'a' * 12} -> {'b' * 12}; the fingerprint format changed)",
        ),
        (
            _change(ChangeKind.PARAMETER, ChangeType.ADDED, name="lr", after="0.1"),
            "parameter lr: new, = 0.1",
        ),
        (
            _change(ChangeKind.PARAMETER, ChangeType.REMOVED, name="lr", before="0.1"),
            "parameter lr: removed (was 0.1)",
        ),
        (
            _change(ChangeKind.PARAMETER, ChangeType.IGNORED, name="lr", before="0.1"),
            "parameter lr: now ignored (was 0.1)",
        ),
        (
            _change(ChangeKind.PARAMETER, ChangeType.CHANGED, name="o", before="<O>", after="<O>"),
            "parameter o: value changed (its repr, <O>, did not)",
        ),
        (
            _change(ChangeKind.OUTPUT, ChangeType.CHANGED, before="a, b", after="a"),
            "outputs changed: (a, b) -> (a)",
        ),
        (
            _change(ChangeKind.OUTPUT, ChangeType.CHANGED, name="m", before="x:J@1", after="x:J@2"),
            "materializer changed: output m (J version 1 -> 2)",
        ),
        (
            _change(ChangeKind.INPUT, ChangeType.REMOVED, name="xs", before="c1"),
            "input xs: no longer an input",
        ),
        (
            _change(
                ChangeKind.INPUT,
                ChangeType.ADDED,
                name="xs",
                after="c1",
                upstream="load",
                source="load.output",
            ),
            "input xs: new (from load.output)",
        ),
        (
            _change(ChangeKind.CACHE, ChangeType.ALWAYS_EXECUTES),
            "cache=False: always executes",
        ),
        (
            _change(ChangeKind.CACHE, ChangeType.FORMAT_CHANGED, before="k1", after="k2"),
            "the cache key format changed since its last run; it will be recomputed",
        ),
    ],
)
def test_every_change_has_its_sentence(change: Change, text: str) -> None:
    assert change_text(change) == text
