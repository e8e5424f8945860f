"""The run's event stream (executors/events.py) on a real cache: hits, misses with
their reasons, stored entries, a damaged hit recomputed, a remote hit; and the
hooks and the CLI's progress agree because both read it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from zencache import Cache, pipeline, step
from zencache.cli.progress import Progress
from zencache.executors import run_pipeline
from zencache.executors.events import (
    CacheEvent,
    Event,
    EventKind,
    MissReason,
    RunEnded,
    RunStarted,
)
from zencache.executors.runner import Runner

HIT, REMOTE_HIT, MISS, STORED = (
    EventKind.HIT,
    EventKind.REMOTE_HIT,
    EventKind.MISS,
    EventKind.STORED,
)


@step
def load(n: int = 3) -> bytes:
    return bytes(range(256)) * 40 * n  # larger than the inline limit: lives in the store


@step
def measure(data: bytes, scale: int = 1) -> int:
    return len(data) * scale


@step(enable_cache=False)
def stamp(size: int) -> str:
    return f"size={size}"


@pipeline
def flow(n: int = 3, scale: int = 1):
    size = measure(data=load(n=n), scale=scale)
    return stamp(size=size)


@pipeline
def plain(n: int = 3, scale: int = 1):
    return measure(data=load(n=n), scale=scale)


def versioned(version: str) -> Any:
    @step(version=version)
    def shout(size: int) -> str:
        return f"SIZE={size}"

    @pipeline
    def pinned(n: int = 3):
        return shout(size=measure(data=load(n=n)))

    return pinned


def record(instance: Any, cache: Cache, **options: Any) -> list[Event]:
    seen: list[Event] = []
    run_pipeline(instance, cache=cache, listeners=[seen.append], **options)
    return seen


def step_events(events: list[Event]) -> list[tuple[str, EventKind]]:
    return [(e.step, e.kind) for e in events if isinstance(e, CacheEvent)]


def misses(events: list[Event]) -> dict[str, tuple[MissReason, ...]]:
    return {e.step: e.reasons for e in events if isinstance(e, CacheEvent) and e.kind is MISS}


def test_a_first_run_misses_new_steps_and_stores_them_then_a_rerun_hits(cache: Cache) -> None:
    first = record(flow(), cache)
    assert isinstance(first[0], RunStarted) and isinstance(first[-1], RunEnded)
    assert first[0].steps == ("load", "measure", "stamp") and first[0].executor == "local"
    assert step_events(first) == [
        ("load", MISS),
        ("load", STORED),
        ("measure", MISS),
        ("measure", STORED),
        ("stamp", MISS),
        ("stamp", STORED),
    ]
    assert misses(first) == {
        "load": (MissReason.NEW,),
        "measure": (MissReason.NEW,),
        "stamp": (MissReason.NOT_CACHED,),
    }
    stored = {e.step: e for e in first if isinstance(e, CacheEvent) and e.kind is STORED}
    ended = first[-1]
    assert isinstance(ended, RunEnded) and ended.run is not None and ended.recorded
    assert ended.status == "completed"
    assert ended.steps == {"load": "executed", "measure": "executed", "stamp": "executed"}
    for name, view in ended.run.steps.items():  # the events say what the run record says
        assert stored[name].key == view.key and stored[name].outputs == view.outputs
        assert stored[name].duration == view.duration and stored[name].status == view.status

    again = record(flow(), cache)
    assert step_events(again) == [
        ("load", HIT),
        ("measure", HIT),
        ("stamp", MISS),
        ("stamp", STORED),
    ]
    hits = [e for e in again if isinstance(e, CacheEvent) and e.kind is HIT]
    assert all(e.source == "local" and e.status == "cached" and e.outputs for e in hits)
    assert hits[0].key == stored["load"].key
    assert misses(again)["stamp"] == (MissReason.NOT_CACHED,)


def test_miss_reasons_name_the_ingredient_that_changed(cache: Cache) -> None:
    record(plain(), cache)
    changed = record(plain(scale=2), cache)
    assert step_events(changed) == [("load", HIT), ("measure", MISS), ("measure", STORED)]
    miss = next(e for e in changed if isinstance(e, CacheEvent) and e.kind is MISS)
    assert miss.reasons == (MissReason.PARAMETERS,)
    assert miss.previous_key and miss.previous_key != miss.key

    upstream = record(plain(n=4, scale=2), cache)  # load's output changes: measure's input
    assert misses(upstream) == {"load": (MissReason.PARAMETERS,), "measure": (MissReason.INPUTS,)}

    forced = record(plain(n=4, scale=2), cache, force=True)
    assert misses(forced) == {"load": (MissReason.FORCED,), "measure": (MissReason.FORCED,)}


def test_a_code_change_and_a_removed_entry_are_reasons_too(cache: Cache) -> None:
    record(versioned("1")(), cache)
    recoded = record(versioned("2")(), cache)
    assert misses(recoded) == {"shout": (MissReason.CODE,)}

    key = next(e.key for e in recoded if isinstance(e, CacheEvent) and e.kind is STORED)
    if key:
        cache.index.update(lambda u: u.delete("steps", key.encode()))
    gone = record(versioned("2")(), cache)
    assert misses(gone) == {"shout": (MissReason.ENTRY_GONE,)}


def _object_files(cache: Cache, content_id: str) -> list[Path]:
    record = cache.index.get_artifact(content_id)
    assert record is not None
    return [p for p in map(cache.store.path, record.object_ids()) if p.exists()]


def test_a_damaged_hit_is_recomputed_and_said_so(cache: Cache, flip_byte: Any) -> None:
    first = record(plain(), cache)
    files = _object_files(cache, _outputs(first, "load")["output"])
    assert files
    for path in files:
        flip_byte(path, os.path.getsize(path) // 2)
    # measure misses (a new scale) and loads load's damaged output: load re-executes.
    again = record(plain(scale=5), cache)
    kinds = step_events(again)
    assert kinds[:1] == [("load", HIT)]
    assert ("load", EventKind.CORRUPT_RECOMPUTED) in kinds
    assert kinds.index(("load", EventKind.CORRUPT_RECOMPUTED)) < kinds.index(("measure", STORED))
    redone = next(
        e for e in again if isinstance(e, CacheEvent) and e.kind is EventKind.CORRUPT_RECOMPUTED
    )
    assert redone.status == "executed" and redone.damaged
    ended = again[-1]
    assert isinstance(ended, RunEnded) and ended.run is not None
    assert ended.run.steps["load"].status == "executed"  # as the record says


def _outputs(events: list[Event], step_name: str) -> dict[str, str]:
    return next(
        dict(e.outputs)
        for e in events
        if isinstance(e, CacheEvent) and e.step == step_name and e.kind is STORED
    )


def test_a_failed_step_and_the_steps_it_blocks(cache: Cache) -> None:
    seen: list[Event] = []
    with pytest.raises(Exception, match="boom"):
        run_pipeline(broken(), cache=cache, listeners=[seen.append])
    assert step_events(seen) == [
        ("explode", MISS),
        ("explode", EventKind.FAILED),
        ("after", EventKind.SKIPPED),
    ]
    failed, skipped = (e for e in seen if isinstance(e, CacheEvent) and e.kind is not MISS)
    assert "ValueError: boom" in failed.error and failed.key
    assert skipped.upstream == "explode" and skipped.status == "skipped"
    ended = seen[-1]
    assert isinstance(ended, RunEnded) and ended.status == "failed"


@step
def explode() -> int:
    raise ValueError("boom")


@step
def after(x: int) -> int:
    return x


@pipeline
def broken():
    return after(x=explode())


def test_a_plain_run_builds_no_event(cache: Cache) -> None:
    instance = plain()
    dag = instance.trace()
    from zencache.core.plan import plan

    runner = Runner(cache, dag, plan(dag), {})
    assert runner.listeners is None  # the hit path's one check; nothing else is built


def test_remote_hits_are_their_own_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ZENCACHE_REMOTE", "ZENCACHE_REMOTE_MODE", "ZENCACHE_REMOTE_KEY"):
        monkeypatch.delenv(name, raising=False)
    folder = tmp_path / "remote"
    folder.mkdir()
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    try:
        record(plain(), ci, remote=folder.as_uri())
        hook = EndRecorder()
        served = record(plain(), laptop, remote=folder.as_uri(), hooks=[hook])
        assert step_events(served) == [("load", REMOTE_HIT), ("measure", REMOTE_HIT)]
        for name in ("load", "measure"):  # both hook methods say where the hit came from
            assert hook.started[name]["source"] == hook.ended[name]["source"] == "remote"
        event = next(e for e in served if isinstance(e, CacheEvent))
        assert event.source == "remote" and event.status == "cached" and event.outputs
        local = record(plain(), laptop, remote=folder.as_uri())  # now in the laptop's cache
        assert step_events(local) == [("load", HIT), ("measure", HIT)]
    finally:
        ci.close()
        laptop.close()


class EndRecorder:
    def __init__(self) -> None:
        self.started: dict[str, dict[str, Any]] = {}
        self.ended: dict[str, dict[str, Any]] = {}

    def on_step_start(self, **fields: Any) -> None:
        self.started[fields["step"]] = fields

    def on_step_end(self, **fields: Any) -> None:
        self.ended[fields["step"]] = fields


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_hooks_and_the_cli_progress_agree(cache: Cache, executor: str) -> None:
    for instance in (flow(), flow(scale=3), flow(scale=3)):
        hook = EndRecorder()
        progress = Progress(instance.trace(), tty=False)
        run_pipeline(
            instance,
            cache=cache,
            executor=executor,
            max_workers=2 if executor != "local" else None,
            hooks=[hook],
            listeners=[progress],
        )
        table = progress.steps()
        assert [e.step for e in table] == ["load", "measure", "stamp"]
        for event in table:
            end = hook.ended[event.step]
            assert (end["status"], end["key"], end["duration"], end["outputs"]) == (
                event.status,
                event.key,
                event.duration,
                dict(event.outputs),
            )
            assert end["source"] == (event.source or None)
            assert hook.started[event.step]["cached"] == (event.status == "cached")
        assert progress.run_ended is not None and progress.run_ended.steps == {
            name: end["status"] for name, end in hook.ended.items()
        }
        assert progress.running() == []
