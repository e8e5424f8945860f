"""`zencache show`, `runs diff`, `runs ls --pipeline`, `runs rm`, `NAME@latest` and
`report` in subprocesses, on a real project and cache.

The project (written once per module, run twice: the second run after editing a
helper and with another parameter):

    flow.py     load -> train -> evaluate     train calls helpers.fit
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "zencache"
REPO = Path(__file__).resolve().parents[2]

FLOW = """
from __future__ import annotations

import numpy as np

import helpers
from zencache import Output, pipeline, step


@step
def load(n: int = 50) -> Output(xs=list, grid=np.ndarray):
    return list(range(n)), np.arange(n * 4, dtype=np.float64).reshape(n, 4)


@step
def train(xs: list, alpha: float = 0.1) -> dict:
    return {"weights": [helpers.fit(x, alpha) for x in xs[:3]]}


@step
def evaluate(model: dict, grid: np.ndarray) -> dict:
    total = sum(model["weights"])
    return {"accuracy": round(total / (total + 10), 6), "rows": int(grid.shape[0])}


@pipeline
def flow(alpha: float = 0.1):
    xs, grid = load()
    model = train(xs=xs, alpha=alpha)
    return evaluate(model=model, grid=grid)
"""

HELPERS = """
def fit(x, alpha):
    return x * alpha + 1
"""


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed console script (falls back to `python -m zencache`)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zencache"]
    env = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # helpers.py is rewritten within a second
    return subprocess.run(
        [*command, "--cache-dir", str(cwd / "cache"), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    (root / "flow.py").write_text(textwrap.dedent(FLOW))
    (root / "helpers.py").write_text(textwrap.dedent(HELPERS))
    ok(cli(root, "run", "flow.py:flow"))
    rewrite(root / "helpers.py", "x * alpha + 1", "x * alpha + 2")
    ok(cli(root, "run", "flow.py:flow", "-p", "alpha=0.5"))
    return root


def one_line_error(result: object) -> str:
    assert result.returncode == 2, result.stdout + result.stderr  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_show_prints_a_small_value_and_its_json(project: Path) -> None:
    out = ok(cli(project, "show", "latest:evaluate"))
    assert '"accuracy"' in out and "builtins.dict" in out
    data = json.loads(ok(cli(project, "show", "flow@latest:evaluate", "--json")))
    assert data["kind"] == "value" and data["value"]["rows"] == 50
    assert data["type"] == "builtins.dict" and len(data["content_id"]) == 32


def test_show_summarizes_arrays_and_shows_every_output_of_a_step(project: Path) -> None:
    out = ok(cli(project, "show", "latest:load"))
    assert "load.xs:" in out and "load.grid:" in out
    assert "shape (50, 4), dtype float64" in out and "min 0.0  max 199.0" in out
    data = json.loads(ok(cli(project, "show", "latest:load", "--json")))
    assert set(data) == {"load.xs", "load.grid"}
    assert data["load.xs"]["kind"] == "value" and data["load.xs"]["value"][:3] == [0, 1, 2]
    assert data["load.grid"]["stats"]["mean"] == 99.5


def test_show_by_content_id_and_export_its_files(project: Path, tmp_path: Path) -> None:
    data = json.loads(ok(cli(project, "show", "latest:load.grid", "--json")))
    content_id = data["content_id"]
    again = json.loads(ok(cli(project, "show", content_id[:12], "--json")))
    assert again == data
    out = tmp_path / "grid"
    written = ok(cli(project, "show", "latest:load.grid", "--out", str(out))).split()
    assert written and all(Path(p).is_file() for p in written)
    assert sum(Path(p).stat().st_size for p in written) == data["size"]
    single = tmp_path / "metrics.json"
    ok(cli(project, "show", "latest:evaluate", "--out", str(single)))
    assert single.is_file() and b"accuracy" in single.read_bytes()


def test_show_refuses_bad_references_in_one_line(project: Path, tmp_path: Path) -> None:
    assert "no step 'nope'" in one_line_error(cli(project, "show", "latest:nope"))
    assert "no output 'zz'" in one_line_error(cli(project, "show", "latest:load.zz"))
    assert "not an artifact reference" in one_line_error(cli(project, "show", "nope"))
    assert "no run of pipeline 'other'" in one_line_error(cli(project, "show", "other@latest:x"))
    message = one_line_error(cli(project, "show", "latest:load", "--out", str(tmp_path / "x")))
    assert "name one for --out" in message
    (tmp_path / "file").write_text("")
    blocked = str(tmp_path / "file" / "inside")
    assert "pass another --out" in one_line_error(
        cli(project, "show", "latest:evaluate", "--out", blocked)
    )
    assert "pass another -o" in one_line_error(cli(project, "report", "-o", blocked))


def test_runs_diff_names_parameters_code_hits_outputs_and_metrics(project: Path) -> None:
    out = ok(cli(project, "runs", "diff", "latest~1", "latest"))
    assert re.search(r"alpha\s+0\.1\s+0\.5", out)
    assert "parameter alpha: 0.1 -> 0.5" in out
    assert "code: helper `fit`" in out
    assert re.search(r"load\s+executed\s+cached", out)
    assert re.search(r"evaluate\s+output\.accuracy\s+\S+\s+\S+\s+[+-]", out)
    data = json.loads(ok(cli(project, "runs", "diff", "flow@latest~1", "flow@latest", "--json")))
    assert data["params"] == [{"name": "alpha", "a": "0.1", "b": "0.5"}]
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["load"]["status"] == {"a": "executed", "b": "cached"}
    assert not steps["load"]["content_changed"]
    (code,) = steps["train"]["code"]
    assert code["part"] == "code:helpers:fit" and code["a"] != code["b"] and not code["own"]
    assert code["description"].startswith("helper `fit` in ")
    assert [o["name"] for o in steps["train"]["outputs"]] == ["output"]
    metrics = {(m["step"], m["name"]): m for m in data["metrics"]}
    accuracy = metrics[("evaluate", "output.accuracy")]
    assert accuracy["delta"] == pytest.approx(accuracy["b"] - accuracy["a"])
    assert not metrics[("evaluate", "output.rows")]["changed"]
    # B defaults to the latest run; a run against itself has nothing to say
    same = ok(cli(project, "runs", "diff", "latest"))
    assert "parameters: no change" in same and "steps: no change" in same


def test_runs_ls_by_pipeline_and_name_at_latest_everywhere(project: Path) -> None:
    runs = json.loads(ok(cli(project, "runs", "ls", "--pipeline", "flow", "--json")))
    assert [r["params"]["alpha"] for r in runs] == ["0.5", "0.1"]
    none = cli(project, "runs", "ls", "--pipeline", "other")
    assert none.returncode == 0 and "no run of pipeline 'other' recorded" in none.stderr
    shown = json.loads(ok(cli(project, "runs", "show", "flow@latest", "--json")))
    assert shown["run_id"] == runs[0]["run_id"]
    lineage = json.loads(ok(cli(project, "lineage", "flow@latest~1:evaluate", "--json")))
    assert lineage["run_id"] == runs[1]["run_id"]


def test_runs_rm_leaves_cached_steps_for_gc(project: Path, tmp_path: Path) -> None:
    work = tmp_path / "work"
    shutil.copytree(project, work)
    runs = json.loads(ok(cli(work, "runs", "ls", "--json")))
    removed = ok(cli(work, "runs", "rm", "latest~1", "--json"))
    assert json.loads(removed) == [{"run_id": runs[1]["run_id"], "pipeline": "flow"}]
    left = json.loads(ok(cli(work, "runs", "ls", "--json")))
    assert [r["run_id"] for r in left] == [runs[0]["run_id"]]
    status = json.loads(ok(cli(work, "cache", "status", "flow.py:flow", "--json")))
    assert {s["status"] for s in status if s["step"] == "load"} == {"cached"}
    assert "no run matches" in one_line_error(cli(work, "runs", "rm", runs[1]["run_id"]))


def test_report_is_one_self_contained_page(project: Path, tmp_path: Path) -> None:
    target = tmp_path / "out" / "report.html"
    ok(cli(project, "report", "latest", "-o", str(target), "--diff", "latest~1"))
    page = target.read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert page.count('class="node ') == 3
    assert re.search(r'data-step="load" data-status="cached"', page)
    assert re.search(r'data-step="train" data-status="executed"', page)
    assert "parameter alpha: 0.1 -&gt; 0.5" in page
    assert "helper `fit`" in page
    assert "output.accuracy" in page
    assert_self_contained(page)


def assert_self_contained(page: str) -> None:
    """Nothing the browser would fetch: no src=, no stylesheet or script links, no
    url() or @import in styles, no http(s) anywhere but the SVG namespace."""
    assert not re.search(r"\ssrc\s*=", page, re.I)
    assert not re.search(r"<link(?![^>]*rel=\"icon\" href=\"data:)", page, re.I)
    assert not re.search(r"url\(|@import", page, re.I)
    addresses = set(re.findall(r"https?://[^\s\"'<>]+", page))
    assert addresses <= {"http://www.w3.org/2000/svg"}, addresses


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed's digits example, run twice (gamma 0.001, then 0.01)."""
    root = tmp_path_factory.mktemp("digits")
    shutil.copytree(REPO / "examples" / "digits", root / "examples" / "digits")
    ok(cli(root, "run", "examples/digits/pipeline.py:digits"))
    ok(cli(root, "run", "examples/digits/pipeline.py:digits", "-p", "gamma=0.01"))
    return root


def test_show_on_the_digits_example(digits: Path) -> None:
    accuracy = json.loads(ok(cli(digits, "show", "digits@latest:evaluator", "--json")))
    assert accuracy["kind"] == "value" and 0 < accuracy["value"] <= 1
    arrays = ok(cli(digits, "show", "latest:importer.X_train"))
    assert "shape (1437, 64), dtype float64" in arrays and "max 16.0" in arrays
    model = json.loads(ok(cli(digits, "show", "latest:svc_trainer", "--json")))
    assert model["kind"] == "estimator" and model["class"] == "sklearn.svm._classes.SVC"
    assert model["params"]["gamma"] == 0.01 and model["fitted"] is True
    assert "gamma = 0.01" in ok(cli(digits, "show", "latest:svc_trainer"))


def test_runs_diff_on_the_digits_example(digits: Path) -> None:
    data = json.loads(ok(cli(digits, "runs", "diff", "digits@latest~1", "--json")))
    assert data["params"] == [{"name": "gamma", "a": "0.001", "b": "0.01"}]
    steps = {s["name"]: s for s in data["steps"]}
    assert steps["importer"]["status"] == {"a": "executed", "b": "cached"}
    assert [p["name"] for p in steps["svc_trainer"]["params"]] == ["gamma"]
    assert [i["name"] for i in steps["evaluator"]["inputs"]] == ["model"]
    (metric,) = data["metrics"]
    assert (metric["step"], metric["name"]) == ("evaluator", "output")
    assert metric["delta"] == pytest.approx(metric["b"] - metric["a"]) and metric["changed"]
    text = ok(cli(digits, "runs", "diff", "digits@latest~1"))
    assert "parameter gamma: 0.001 -> 0.01" in text and "evaluator  output" in text
