"""Results as data on a real cache: Cache().runs()/run()/artifact(), step views,
runs rm, diffs and the repository facade."""

from __future__ import annotations

import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import zencache
from zencache import Cache, Output, pipeline, step
from zencache.errors import CacheError, UsageError
from zencache.maintenance import delete_runs, gc
from zencache.results import diff_runs
from zencache.storage.index import Index
from zencache.storage.records import RunRecord
from zencache.storage.store import ObjectStore

FACTOR = 2


@step
def load(n: int = 5, seed: int = 0) -> Output(features=np.ndarray, labels=np.ndarray):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), np.arange(n) % 2


@step
def train(features: np.ndarray, labels: np.ndarray, alpha: float = 0.1) -> dict:
    return {"weights": [float(w) * alpha * FACTOR for w in features.sum(axis=0)]}


@step
def evaluate(model: dict, labels: np.ndarray) -> dict:
    score = sum(model["weights"])
    return {"accuracy": round(abs(score) % 1, 6), "n": int(labels.size), "name": "demo"}


@pipeline
def experiment(alpha: float = 0.1, n: int = 5):
    features, labels = load(n=n)
    model = train(features=features, labels=labels, alpha=alpha)
    return evaluate(model=model, labels=labels)


@step
def one() -> int:
    return 1


@pipeline
def other():
    return one()


@pytest.fixture
def public(cache: Any) -> Cache:
    return Cache(cache.path)


def test_cache_is_the_public_one_and_reads_without_creating(tmp_path: Path) -> None:
    assert zencache.Cache is Cache
    with pytest.raises(CacheError, match="no cache at"):
        Cache(tmp_path / "missing").runs()
    assert not (tmp_path / "missing").exists()


def test_runs_are_listed_newest_first_and_filtered(public: Cache) -> None:
    first = experiment(alpha=0.1).run(cache=public)
    second = other().run(cache=public)
    third = experiment(alpha=0.2).run(cache=public)
    assert [r.id for r in public.runs()] == [third.run_id, second.run_id, first.run_id]
    assert [r.id for r in public.runs(pipeline="experiment")] == [third.run_id, first.run_id]
    assert [r.id for r in public.runs(pipeline="experiment", limit=1)] == [third.run_id]
    assert public.runs(status="completed")[0].id == third.run_id
    assert public.runs(status="failed") == []
    assert public.runs(pipeline="nope") == []
    assert public.pipelines() == ["experiment", "other"]
    with pytest.raises(UsageError, match="unknown run status 'done'"):
        public.runs(status="done")


def test_a_run_is_found_by_every_name(public: Cache) -> None:
    first = experiment(alpha=0.1).run(cache=public)
    second = other().run(cache=public)
    third = experiment(alpha=0.2).run(cache=public)
    assert public.run().id == third.run_id
    assert public.run("latest").id == third.run_id
    assert public.run("latest~1").id == second.run_id
    assert public.run("experiment@latest").id == third.run_id
    assert public.run("experiment@latest~1").id == first.run_id
    assert public.run("other@latest").id == second.run_id
    assert public.run(first.run_id).id == first.run_id
    assert public.run(first.run_id.rpartition("-")[2]).id == first.run_id
    with pytest.raises(UsageError, match=r"no run of pipeline 'nope'.*experiment, other"):
        public.run("nope@latest")
    with pytest.raises(UsageError, match="fewer than 3 runs of pipeline 'experiment'"):
        public.run("experiment@latest~2")
    with pytest.raises(UsageError, match="fewer than 4 runs"):
        public.run("latest~3")
    with pytest.raises(UsageError, match="no run matches 'zzz'"):
        public.run("zzz")


def test_a_step_view_has_status_key_parameters_code_environment_and_outputs(
    public: Cache,
) -> None:
    made = experiment(alpha=0.1).run(cache=public)
    run = public.run("latest")
    assert run.id == made.run_id and run.pipeline == "experiment"
    assert run.status == "completed" and run.parameters == {"alpha": "0.1", "n": "5"}
    assert run.duration >= 0 and run.finished >= run.started
    assert run.environment is not None and run.environment.python
    assert list(run.steps) == ["load", "train", "evaluate"]
    train_step = run.steps["train"]
    assert train_step.status == "executed" and train_step.key == made.steps["train"].key
    assert train_step.duration > 0
    assert train_step.parameters == {"alpha": 0.1}
    assert train_step.step.endswith(":train")
    assert any(p.startswith("code:") and p.endswith(":train") for p in train_step.code_parts)
    assert any(":FACTOR" in p for p in train_step.code_parts)  # the constant it reads
    assert train_step.fingerprint
    assert train_step.environment is not None
    assert train_step.environment.env_id == run.environment.env_id
    assert set(train_step.inputs) == {"features", "labels"}
    assert train_step.inputs["labels"] == run.steps["load"].outputs["labels"]
    features = run.steps["load"].output("features")
    assert isinstance(features, np.ndarray) and features.shape == (5, 3)
    assert run.steps["evaluate"].output()["name"] == "demo"
    assert run.output() == made.output()
    assert train_step.run_id == made.run_id

    again = experiment(alpha=0.1).run(cache=public)
    cached = public.run("latest").steps["train"]
    assert cached.status == "cached" and cached.cached
    assert cached.run_id == made.run_id  # the run that computed it
    assert public.run("latest").id == again.run_id


def test_views_are_read_only_and_pickle(public: Cache) -> None:
    experiment().run(cache=public)
    run = public.run()
    train_step = run.steps["train"]
    with pytest.raises(TypeError):
        run.steps["train"] = train_step  # type: ignore[index]
    with pytest.raises(AttributeError):
        train_step.status = "cached"  # type: ignore[misc]
    assert train_step.entry is not None
    copied = pickle.loads(pickle.dumps(run.record))
    assert copied == run.record
    restored = pickle.loads(pickle.dumps(train_step))
    assert restored.entry == train_step.entry and restored.key == train_step.key


def test_a_failed_step_has_no_entry_but_says_why(public: Cache) -> None:
    @step
    def boom(x: int) -> int:
        raise ValueError("no good")

    @pipeline
    def broken():
        return boom(x=one())

    with pytest.raises(Exception, match="failed"):
        broken().run(cache=public)
    run = public.run("broken@latest")
    assert run.status == "failed"
    assert run.steps["boom"].status == "failed" and "no good" in run.steps["boom"].error
    assert run.steps["boom"].entry is None and run.steps["boom"].parameters == {}
    assert public.runs(status="failed")[0].id == run.id


def test_artifacts_by_content_id_prefix_or_step_with_lineage(public: Cache) -> None:
    run = experiment().run(cache=public)
    model_id = run.steps["train"].outputs["output"]
    artifact = public.artifact(model_id)
    assert artifact.id == model_id and artifact.type_name == "builtins:dict"
    assert artifact.load() == run.steps["train"].output() == artifact.read()
    assert public.artifact(model_id[:10]).id == model_id
    assert public.artifact("latest:train").id == model_id
    assert (
        public.artifact("experiment@latest:load.labels").id == run.steps["load"].outputs["labels"]
    )
    tree = artifact.lineage()
    assert tree.root.name == "train"
    assert {i.name: i.producer.name for i in tree.root.inputs if i.producer} == {
        "features": "load",
        "labels": "load",
    }
    assert [p.name for p in artifact.producers()] == ["train"]
    with pytest.raises(UsageError, match="has outputs features, labels; name one"):
        public.artifact("latest:load")
    with pytest.raises(UsageError, match="no output 'nope'"):
        public.artifact("latest:load.nope")
    with pytest.raises(UsageError, match="no step 'nope'"):
        public.artifact("latest:nope")
    with pytest.raises(UsageError, match="not an artifact reference"):
        public.artifact("xyz")
    with pytest.raises(UsageError, match="no artifact"):
        public.artifact("0" * 32)


def test_runs_rm_removes_records_and_leaves_shared_entries_to_gc(public: Cache) -> None:
    first = experiment(alpha=0.1).run(cache=public)
    second = experiment(alpha=0.2).run(cache=public)
    removed = delete_runs(public, [first.run_id])
    assert [r.run_id for r in removed] == [first.run_id]
    assert [r.id for r in public.runs()] == [second.run_id]
    # load is shared with the kept run; its entry and objects stay
    load_step = public.run().steps["load"]
    assert load_step.entry is not None and load_step.output("features").shape == (5, 3)
    # train(alpha=0.1) only the removed run named; gc may prune it, never the shared ones
    gc(public, keep_last=5, grace=0)
    assert public.index.get_step(first.steps["train"].key) is None
    assert public.index.get_step(second.steps["train"].key) is not None
    assert public.run().steps["load"].output("labels").tolist() == [0, 1, 0, 1, 0]
    with pytest.raises(UsageError, match="no run matches"):
        delete_runs(public, [first.run_id])


def test_diff_names_parameters_ran_vs_hit_outputs_and_metric_deltas(public: Cache) -> None:
    a = experiment(alpha=0.1).run(cache=public)
    b = experiment(alpha=0.3).run(cache=public)
    found = diff_runs(public.run(a.run_id), public.run(b.run_id))
    assert [(c.name, c.a, c.b) for c in found.params] == [("alpha", "0.1", "0.3")]
    by_name = {s.name: s for s in found.steps}
    assert (by_name["load"].status_a, by_name["load"].status_b) == ("executed", "cached")
    assert not by_name["load"].content_changed and by_name["load"].changed
    assert [(c.name, c.a, c.b) for c in by_name["train"].params] == [("alpha", "0.1", "0.3")]
    assert [c.name for c in by_name["train"].outputs] == ["output"]
    assert [c.name for c in by_name["evaluate"].inputs] == ["model"]
    metrics = {(m.step, m.name): m for m in found.metrics}
    accuracy = metrics[("evaluate", "output.accuracy")]
    assert accuracy.a == a.output()["accuracy"] and accuracy.b == b.output()["accuracy"]
    assert accuracy.delta == pytest.approx(accuracy.b - accuracy.a)
    assert not metrics[("evaluate", "output.n")].changed
    assert ("evaluate", "output.name") not in metrics  # not a number
    assert all(m.name.startswith("output.weights") is False for m in found.metrics)
    same = diff_runs(public.run(b.run_id), public.run(b.run_id))
    assert not same.changed_steps and not same.params
    assert not any(m.changed for m in same.metrics)
    data = found.to_json()
    assert data["a"]["run_id"] == a.run_id and data["params"][0]["name"] == "alpha"


def test_diff_of_runs_of_different_shapes_lists_steps_in_one_only(public: Cache) -> None:
    experiment(n=4).run(cache=public)
    other().run(cache=public)
    found = diff_runs(public.run("experiment@latest"), public.run("other@latest"))
    assert {(s.name, s.status_a, s.status_b) for s in found.steps} == {
        ("load", "executed", None),
        ("train", "executed", None),
        ("evaluate", "executed", None),
        ("one", None, "executed"),
    }
    assert all(s.content_changed for s in found.steps)


# --- scale -------------------------------------------------------------------------------


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def wrap(self, fn: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return fn(*args, **kwargs)

        return counted


def test_listing_10000_runs_loads_no_artifact_and_reads_no_entry(
    public: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    template = experiment().run(cache=public).record
    started = time.time()
    ops = []
    for number in range(10_000):
        run_id = f"20000101T000000.{number:06d}-{number:06x}"
        record = RunRecord(
            run_id=run_id,
            pipeline=template.pipeline if number % 2 else "other",
            params=template.params,
            status="completed" if number % 3 else "failed",
            started=started + number,
            finished=started + number + 1,
            env_id=template.env_id,
            steps=template.steps,
            output=template.output,
        )
        ops.append(("runs", run_id.encode(), record.encode()))
    public.index.write(ops)

    loads = Counting()
    for cls, name in (
        (ObjectStore, "read_blob"),
        (ObjectStore, "map_blob"),
        (Index, "get_artifact"),
        (Index, "get_step"),
        (Index, "get_env"),
    ):
        monkeypatch.setattr(cls, name, loads.wrap(getattr(cls, name)))

    runs = public.runs()
    assert len(runs) == 10_001
    assert runs[0].id == template.run_id  # its id sorts after the made-up ones
    assert runs[1].id == "20000101T000000.009999-00270f"
    summary = [(r.id, r.pipeline, r.status, r.duration, len(r.steps)) for r in runs]
    assert len(summary) == 10_001
    assert len(public.runs(pipeline="other", status="failed")) == 1667
    assert loads.calls == 0
    runs[1].steps["train"].output()  # loading is on demand
    assert loads.calls > 0
