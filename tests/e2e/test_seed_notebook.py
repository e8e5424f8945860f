"""The seed's notebook, with `zenml` replaced by `zencache` (`sed s/zenml/zencache/g`), runs.

Its code cells are taken from the seed file as they are, joined into one script,
with a small `steps` package providing the steps it imports (simple bodies on a
tiny dataset). The script runs twice with `python` (the second run is all cached),
then `zencache run` on it shares those entries, materializer included, and
`cache status` on it executes nothing although the script ends with an unguarded
`first_pipeline.run()`. Skipped only when the seed file is absent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SEED = REPO.parent / "shared" / "seed" / "000_9405dcd8fb6e7171.txt"
SCRIPT = Path(sys.executable).parent / "zencache"

STEPS_INIT = """
import numpy as np
from zencache.steps import Output, step


@step
def importer() -> Output(
    X_train=np.ndarray, X_test=np.ndarray, y_train=np.ndarray, y_test=np.ndarray
):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 4))
    y = (X[:, 0] > 0).astype(int)
    return X[:30], X[30:], y[:30], y[30:]


@step
def evaluator(X_test: np.ndarray, y_test: np.ndarray, model) -> float:
    return float(model.score(X_test, y_test))
"""

STEPS_TRAINER = """
import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.svm import SVC
from zencache.steps import step


@step
def svc_trainer_mlflow(X_train: np.ndarray, y_train: np.ndarray) -> ClassifierMixin:
    model = SVC(gamma=0.01)
    model.fit(X_train, y_train)
    return model
"""


def code_cells(text: str) -> list[str]:
    """The notebook's code cells: from `In [...]:` to the next heading or cell."""
    cells = []
    for chunk in re.split(r"^In \[[^\]]*\]:\n", text, flags=re.MULTILINE)[1:]:
        lines = []
        for line in chunk.splitlines():
            if re.match(r"^#{2,} ", line):  # a Markdown heading: the cell is over
                break
            lines.append(line)
        cells.append("\n".join(lines).rstrip() + "\n")
    return cells


def zencache_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zencache"]
    return subprocess.run(
        [*command, *args], cwd=cwd, capture_output=True, text=True, env=_env(), timeout=180
    )


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENCACHE_")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.mark.skipif(not SEED.exists(), reason=f"the seed is not at {SEED}")
def test_the_seed_notebook_with_zenml_replaced_runs(tmp_path: Path) -> None:
    cells = code_cells(SEED.read_text())
    assert len(cells) == 5 and "first_pipeline.run()" in cells[-1]
    code = subprocess.run(
        ["sed", "s/zenml/zencache/g"],
        input="\n\n".join(cells),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "zenml" not in code and "from zencache.pipelines import pipeline" in code
    project = tmp_path / "project"
    (project / "steps").mkdir(parents=True)
    (project / "steps" / "__init__.py").write_text(STEPS_INIT)
    (project / "steps" / "trainer.py").write_text(STEPS_TRAINER)
    (project / "seed_flow.py").write_text(code)

    def python() -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-W", "ignore", "seed_flow.py"],
            cwd=project,
            capture_output=True,
            text=True,
            env=_env(),
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return done

    python()
    runs = json.loads(zencache_cli(project, "runs", "show", "latest", "--json").stdout)
    assert {s["name"]: s["status"] for s in runs["steps"]} == {
        "importer": "executed",
        "trainer": "executed",
        "evaluator": "executed",
    }
    # The trainer's model went through the seed's own materializer, named after the script.
    trainer = next(s for s in runs["steps"] if s["name"] == "trainer")
    assert "seed_flow:SklearnMaterializer@1" in json.dumps(trainer)
    python()
    again = json.loads(zencache_cli(project, "runs", "show", "latest", "--json").stdout)
    assert {s["status"] for s in again["steps"]} == {"cached"}

    # The CLI on the script: the run at its end is skipped while importing; the
    # command's own run hits what `python seed_flow.py` stored.
    status = zencache_cli(project, "cache", "status", "seed_flow.py:first_pipeline", "--json")
    assert status.returncode == 0, status.stderr
    assert {s["status"] for s in json.loads(status.stdout)} == {"cached"}
    assert "not executed" in status.stderr
    done = zencache_cli(project, "run", "seed_flow.py:first_pipeline", "--json")
    assert done.returncode == 0, done.stderr
    assert {s["status"] for s in json.loads(done.stdout)["steps"]} == {"cached"}
    listed = json.loads(zencache_cli(project, "runs", "ls", "--json").stdout)
    assert len(listed) == 3  # two python runs and one zencache run: the imports ran nothing
