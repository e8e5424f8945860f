"""ZenML's post-execution API of the seed's era (zencache.repository) on a real cache,
in the seed's style: step instances injected into the pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from zencache import Cache
from zencache.errors import UsageError
from zencache.pipelines import pipeline
from zencache.repository import Repository
from zencache.steps import Output, step


@step
def importer(n: int = 6) -> Output(X=np.ndarray, y=np.ndarray):
    return np.arange(n * 2).reshape(n, 2), np.arange(n) % 2


@step
def svc_trainer(X: np.ndarray, y: np.ndarray, gamma: float = 0.001) -> dict:
    return {"gamma": gamma, "rows": int(X.shape[0])}


@step
def evaluator(model: dict) -> float:
    return model["gamma"] * 10


@pipeline
def digits_pipeline(importer, trainer, evaluator):
    X, y = importer()
    model = trainer(X=X, y=y)
    evaluator(model=model)


@pytest.fixture
def repo(cache: Any) -> Repository:
    for gamma in (0.001, 0.01):
        digits_pipeline(
            importer=importer(), trainer=svc_trainer(gamma=gamma), evaluator=evaluator()
        ).run(cache=Cache(cache.path))
    return Repository(cache.path)


def test_the_seed_era_post_execution_api(repo: Repository) -> None:
    assert [p.name for p in repo.get_pipelines()] == ["digits_pipeline"]
    pipe = repo.get_pipeline("digits_pipeline")
    assert pipe is not None and pipe == repo.get_pipeline(pipeline=digits_pipeline)
    runs = pipe.runs
    assert len(runs) == 2 and runs[0].name < runs[1].name  # oldest first
    run = runs[-1]
    assert run.status == "completed" and run.name == pipe.last_run.name
    assert run.get_step_names() == ["importer", "trainer", "evaluator"]
    trainer = run.get_step("trainer")
    assert trainer.entrypoint_name == "svc_trainer"
    assert trainer.parameters == {"gamma": 0.01}
    assert trainer.output.read() == {"gamma": 0.01, "rows": 6}
    assert trainer.outputs["output"].read() == {"gamma": 0.01, "rows": 6}
    assert run.get_step(step="svc_trainer").name == "trainer"
    assert set(trainer.inputs) == {"X", "y"}
    assert trainer.inputs["y"].read().tolist() == [0, 1, 0, 1, 0, 1]
    importer_step = run.get_step("importer")
    assert importer_step.is_cached and not runs[0].get_step("importer").is_cached
    assert importer_step.outputs["X"].read().shape == (6, 2)
    assert importer_step.outputs["X"].data_type == "numpy.ndarray"
    assert run.get_step("evaluator").output.read() == pytest.approx(0.1)
    assert runs[0].get_step("evaluator").output.read() == pytest.approx(0.01)
    assert pipe.get_run(runs[0].name).name == runs[0].name


def test_mistakes_are_one_line_errors_or_none_as_in_zenml(repo: Repository) -> None:
    assert repo.get_pipeline("nope") is None
    run = repo.get_pipeline("digits_pipeline").last_run  # type: ignore[union-attr]
    with pytest.raises(UsageError, match=r"has 2 outputs \(X, y\); use step\.outputs"):
        _ = run.get_step("importer").output
    with pytest.raises(UsageError, match="no step 'nope'; its steps are: importer"):
        run.get_step("nope")
    with pytest.raises(UsageError, match="omit materializer_class"):
        run.get_step("trainer").output.read(materializer_class=object)


def test_an_empty_cache_has_no_pipelines(tmp_path: Path) -> None:
    from zencache.errors import CacheError

    with pytest.raises(CacheError, match="no cache at"):
        Repository(tmp_path / "none").get_pipelines()
