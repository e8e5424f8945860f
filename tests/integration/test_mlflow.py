"""The MLflow hook against a real MLflow tracking store (sqlite), read back with
MLflow's own client: the digits example run twice (every step of the second MLflow
run tagged cached, with the same metrics as the first), series, failures, the
processes executor, and selection by name."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

mlflow = pytest.importorskip("mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

import zencache  # noqa: E402
from zencache import Cache, pipeline, step  # noqa: E402
from zencache.errors import StepFailedError  # noqa: E402
from zencache.integrations.mlflow import MLflowHook  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
# MLflow's sqlite store uses SQLAlchemy options that SQLAlchemy 2.1 deprecates: theirs.
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SADeprecationWarning")


@pytest.fixture(scope="session")
def tracking_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A sqlite tracking store with MLflow's tables: made once (its migrations take
    seconds), copied for each test."""
    folder = tmp_path_factory.mktemp("mlflow-template")
    db = folder / "mlflow.db"
    MlflowClient(f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture
def tracking_uri(tracking_db: Path, tmp_path: Path) -> Iterator[str]:
    db = tmp_path / "mlflow.db"
    shutil.copyfile(tracking_db, db)
    yield f"sqlite:///{db}"


def runs_of(uri: str, experiment: str) -> list[Any]:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r}"
    return client.search_runs([found.experiment_id], order_by=["attributes.start_time ASC"])


def split(runs: list[Any], zencache_run_id: str) -> tuple[Any, dict[str, Any]]:
    """The pipeline's MLflow run of one zencache run, and its nested step runs by step."""
    mine = [r for r in runs if r.data.tags.get("zencache.run_id") == zencache_run_id]
    parents = [r for r in mine if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1
    parent = parents[0]
    children = {
        r.data.tags["zencache.step"]: r
        for r in mine
        if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id
    }
    return parent, children


def test_the_digits_example_twice_shows_every_step_cached_with_the_same_metrics(
    tracking_uri: str, tmp_path: Path
) -> None:
    example = REPO / "examples" / "digits_mlflow" / "run.py"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    outputs = []
    for _ in range(2):
        done = subprocess.run(
            [
                sys.executable,
                str(example),
                "--tracking-uri",
                tracking_uri,
                "--cache-dir",
                str(tmp_path / "cache"),
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        outputs.append(done.stdout)
    assert "trainer    executed" in outputs[0] and "trainer    cached" in outputs[1]

    runs = runs_of(tracking_uri, "digits")
    ids = [r.data.tags["zencache.run_id"] for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(ids) == 2
    (parent1, first), (parent2, second) = split(runs, ids[0]), split(runs, ids[1])
    assert set(first) == set(second) == {"importer", "trainer", "evaluator"}
    for name in first:
        a, b = first[name], second[name]
        assert a.data.tags["zencache.status"] == "executed"
        assert b.data.tags["zencache.status"] == "cached"
        assert a.info.status == b.info.status == "FINISHED"
        assert a.data.metrics == b.data.metrics
        assert a.data.params == b.data.params
        assert a.data.tags["zencache.key"] == b.data.tags["zencache.key"]
        outputs_a = {k: v for k, v in a.data.tags.items() if k.startswith("zencache.output.")}
        outputs_b = {k: v for k, v in b.data.tags.items() if k.startswith("zencache.output.")}
        assert outputs_a and outputs_a == outputs_b
        # The link to the run that produced the cached entry.
        assert b.data.tags["zencache.produced_by"] == ids[0]
        assert b.data.tags["zencache.produced_by.mlflow_run_id"] == a.info.run_id
    trainer = first["trainer"].data
    assert set(trainer.metrics) == {"cv_accuracy", "train_accuracy"}
    assert trainer.params == {"gamma": "0.001", "C": "1.0"}
    assert trainer.tags["zencache.metadata.kernel"] == "rbf"
    assert first["evaluator"].data.metrics["test_accuracy"] > 0.9
    client = MlflowClient(tracking_uri)
    for run in (first["trainer"], second["trainer"]):  # the series, with its step numbers
        history = client.get_metric_history(run.info.run_id, "cv_accuracy")
        assert sorted(m.step for m in history) == [0, 1, 2]
    assert parent1.data.metrics == parent2.data.metrics
    assert (
        parent2.data.metrics["evaluator/test_accuracy"]
        == first["evaluator"].data.metrics["test_accuracy"]
    )
    assert parent1.info.status == parent2.info.status == "FINISHED"


@step
def make(n: int = 4) -> list:
    zencache.log_metadata(n=n)
    return list(range(n))


@step
def train(data: list, rate: float = 0.5) -> float:
    for epoch in range(4):
        zencache.log_metric("loss", 1.0 / (epoch + 1))
    zencache.log_metric("score", sum(data) * rate)
    return sum(data) * rate


@step
def crash(data: list) -> float:
    raise RuntimeError("diverged")


@pipeline
def small(rate: float = 0.5):
    return train(data=make(), rate=rate)


@pipeline
def broken():
    data = make()
    return train(data=crash(data=data)), train(data=data, rate=2.0)


@pytest.mark.parametrize("executor", ["local", "processes"])
def test_steps_executed_in_workers_are_logged_like_local_ones(
    tracking_uri: str, cache: Cache, executor: str
) -> None:
    hook = MLflowHook(tracking_uri=tracking_uri, experiment_name=f"small-{executor}")
    run1 = small().run(executor=executor, cache=cache, hooks=[hook])
    run2 = small().run(executor=executor, cache=cache, hooks=[hook])  # one hook, many runs
    runs = runs_of(tracking_uri, f"small-{executor}")
    _, first = split(runs, run1.run_id)
    _, second = split(runs, run2.run_id)
    for children in (first, second):
        data = children["train"].data
        assert data.metrics == {"loss": 0.25, "score": 3.0}
        assert data.params == {"rate": "0.5"}
        history = MlflowClient(tracking_uri).get_metric_history(
            children["train"].info.run_id, "loss"
        )
        assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
            (0, 1.0),
            (1, 0.5),
            (2, pytest.approx(1 / 3)),
            (3, 0.25),
        ]
    assert {c.data.tags["zencache.status"] for c in second.values()} == {"cached"}
    assert second["make"].data.tags["zencache.metadata.n"] == "4"
    assert hook.mlflow_run_id(run1.run_id) is None  # finished runs are forgotten


def test_failed_and_skipped_steps_are_logged_with_their_status(
    tracking_uri: str, cache: Cache
) -> None:
    hook = MLflowHook(tracking_uri=tracking_uri, experiment_name="broken")
    with pytest.raises(StepFailedError):
        broken().run(cache=cache, hooks=[hook])
    runs = runs_of(tracking_uri, "broken")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    _, children = split(runs, parent.data.tags["zencache.run_id"])
    assert children["crash"].data.tags["zencache.status"] == "failed"
    assert children["crash"].info.status == "FAILED"
    assert "diverged" in children["crash"].data.tags["zencache.error"]
    assert children["train"].data.tags["zencache.status"] == "skipped"
    assert children["train_2"].data.tags["zencache.status"] == "executed"
    assert parent.info.status == "FAILED"


def test_hooks_mlflow_by_name_uses_mlflows_own_settings(
    tracking_uri: str, cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "by-name")
    run = small(rate=0.25).run(cache=cache, hooks=["mlflow"])
    _, children = split(runs_of(tracking_uri, "by-name"), run.run_id)
    assert children["train"].data.metrics["score"] == 1.5
