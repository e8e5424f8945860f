"""`zencache audit` in subprocesses, on a real project written into tmp_path and a real
cache: every audit re-executes steps in fresh interpreters.

The project (flow.py):

    clean      load -> scale -> summarize     deterministic
    noisy      load -> jitter                 jitter draws from an unseeded generator
    declared   load -> sample                 sample is @step(deterministic=False)
    offset     load -> shift                  shift reads $AUDIT_OFFSET, an input
                                              zencache cannot see
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from zencache_testing import run_cli

from zencache.storage.cache import Cache
from zencache.storage.records import EnvRecord

FLOW = """
from __future__ import annotations

import os

import numpy as np

from zencache import pipeline, step


@step
def load(n: int = 600) -> np.ndarray:
    return np.linspace(0.0, 1.0, n)  # 4800 bytes: stored as objects, not inline


@step(ignore=("verbose",))
def scale(x: np.ndarray, factor: float = 2.0, verbose: bool = False) -> np.ndarray:
    return x * factor


@step
def summarize(y: np.ndarray, label: tuple = ("mean", 1)) -> dict:
    return {"mean": float(y.mean()), "n": len(y), "label": label}


@step
def jitter(x: np.ndarray) -> np.ndarray:
    return x + np.random.default_rng().normal(scale=1e-3, size=x.shape)


@step(deterministic=False)
def sample(x: np.ndarray) -> np.ndarray:
    return np.random.default_rng().permutation(x)


@step
def shift(x: np.ndarray) -> np.ndarray:
    # A computed name: zencache cannot key on it (a literal one it would), so this is
    # the input the key does not track that --twice must tell from nondeterminism.
    return x + float(os.environ.get("_".join(("AUDIT", "OFFSET")), "0"))


@pipeline
def clean(n: int = 600, factor: float = 2.0):
    x = load(n=n)
    y = scale(x=x, factor=factor, verbose=True)
    return summarize(y=y)


@pipeline
def noisy(n: int = 600):
    return jitter(x=load(n=n))


@pipeline
def declared(n: int = 600):
    return sample(x=load(n=n))


@pipeline
def offset(n: int = 600):
    return shift(x=load(n=n))


if __name__ == "__main__":
    clean(factor=3.0).run()
"""


def zencache(
    project: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(
        *args, cwd=project, env={"ZENCACHE_DIR": str(project / ".zencache"), **(env or {})}
    )


def audit_json(project: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = zencache(project, "audit", *args, "--json", env=env)
    assert done.returncode in (0, 1), done.stderr
    report = json.loads(done.stdout)
    report["exit"] = done.returncode
    report["by_name"] = {s["name"]: s for s in report["steps"]}
    return report


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project, with one run of each pipeline recorded (oldest first)."""
    project = tmp_path_factory.mktemp("audit-project")
    (project / "flow.py").write_text(FLOW)
    for name in ("noisy", "declared", "clean"):
        done = zencache(project, "run", f"flow.py:{name}")
        assert done.returncode == 0, done.stderr
    done = zencache(project, "run", "flow.py:offset", env={"AUDIT_OFFSET": "1"})
    assert done.returncode == 0, done.stderr
    return project


@pytest.fixture
def project(baseline: Path, tmp_path: Path) -> Path:
    """A private copy of the project and its cache, for tests that change either."""
    copy = tmp_path / "project"
    shutil.copytree(baseline, copy)
    return copy


def run_id_of(project: Path, pipeline: str) -> str:
    done = zencache(project, "runs", "ls", "--json")
    runs = [r for r in json.loads(done.stdout) if r["pipeline"] == pipeline]
    return runs[0]["run_id"]


def cache_snapshot(project: Path) -> tuple[dict[str, list[bytes]], list[str]]:
    """Every index entry (keys and values) and every object file."""
    cache = Cache(project / ".zencache")
    try:
        index = cache.index
        dbs = {
            db: [k + b"=" + v for k, v in index.items(db)]
            for db in ("steps", "artifacts", "runs", "envs", "latest")
        }
        objects = sorted(
            str(p) for p in (project / ".zencache" / "objects").rglob("*") if p.is_file()
        )
    finally:
        cache.close()
    return dbs, objects


# --- the four the issue names ------------------------------------------------------------------


def test_a_deterministic_pipeline_audits_clean_and_writes_nothing(project: Path) -> None:
    # Recorded by `python flow.py`: the steps live in a __main__ script.
    done = subprocess.run(
        [sys.executable, "flow.py"],
        cwd=project,
        env={**os.environ, "ZENCACHE_DIR": str(project / ".zencache")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    before = cache_snapshot(project)

    done = zencache(project, "audit", "latest")

    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for name in ("load", "scale", "summarize"):
        assert any(line.split()[:2] == [name, "reproducible"] for line in lines), done.stdout
    assert "environment: unchanged since the run" in done.stdout
    assert "ok: 3 reproducible" in done.stdout
    assert cache_snapshot(project) == before


def test_a_step_with_an_unseeded_generator_is_flagged(baseline: Path) -> None:
    done = zencache(baseline, "audit", run_id_of(baseline, "noisy"), "--steps", "jitter")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "jitter: not reproducible: output 'output' differs" in done.stdout
    assert "max abs difference" in done.stdout

    report = audit_json(baseline, run_id_of(baseline, "noisy"))
    assert report["exit"] == 1 and report["ok"] is False
    assert report["by_name"]["load"]["status"] == "reproducible"
    jitter = report["by_name"]["jitter"]
    assert jitter["status"] == "not reproducible"
    (output,) = jitter["outputs"]
    assert output["name"] == "output" and output["matches"] is False
    assert output["now"][0] != output["recorded"]
    assert 0 < output["max_abs_diff"] < 0.1  # noise of scale 1e-3


def test_a_step_whose_inputs_were_garbage_collected_is_not_checkable(project: Path) -> None:
    run_id = run_id_of(project, "clean")
    cache = Cache(project / ".zencache")
    try:
        run = cache.index.get_run(run_id)
        assert run is not None
        x = next(s for s in run.steps if s.name == "load").outputs["output"]
        artifact = cache.index.get_artifact(x)
        assert artifact is not None and artifact.object_ids()
        for object_id in artifact.object_ids():
            cache.store.delete(object_id)
        cache.index.write([("artifacts", x.encode(), None)])
    finally:
        cache.close()

    report = audit_json(project, run_id)

    scale = report["by_name"]["scale"]
    assert scale["status"] == "not checkable"
    assert scale["missing_inputs"] == ["x"]
    assert "inputs missing from the cache: 'x'" in scale["reason"]
    assert report["by_name"]["load"]["status"] == "reproducible"  # no inputs: still checkable
    assert report["by_name"]["summarize"]["status"] == "reproducible"
    assert report["exit"] == 0  # every step that could be checked reproduced
    assert zencache(project, "audit", run_id, "--strict", "--steps", "scale").returncode == 1


def test_environment_drift_is_reported(project: Path) -> None:
    run_id = run_id_of(project, "clean")
    cache = Cache(project / ".zencache")
    try:
        run = cache.index.get_run(run_id)
        assert run is not None
        env = cache.index.get_env(run.env_id)
        assert env is not None
        distributions = {**env.distributions, "numpy": "1.0.0", "ghostpkg": "0.1"}
        distributions.pop("click")
        old = EnvRecord(
            env_id="f" * 32,
            python="3.9.0",
            implementation=env.implementation,
            platform="Plan9-4-mips",
            machine=env.machine,
            distributions=distributions,
            extra={**env.extra, "numpy_blas": "reference-blas 3.0"},
        )
        # load was a cache hit in the clean run: the noisy run executed it, elsewhere.
        noisy = cache.index.get_run(run_id_of(project, "noisy"))
        assert noisy is not None
        older = replace(env, env_id="e" * 32, python="3.8.1")
        # Its step entry names the environment that executed it.
        (load_run,) = [s for s in noisy.steps if s.name == "load"]
        entry = cache.index.get_step(load_run.key)
        assert entry is not None and entry.env_id == noisy.env_id
        cache.index.write(
            [
                ("envs", old.env_id.encode(), old.encode()),
                ("envs", older.env_id.encode(), older.encode()),
                ("runs", run_id.encode(), replace(run, env_id=old.env_id).encode()),
                ("steps", entry.key.encode(), replace(entry, env_id=older.env_id).encode()),
            ]
        )
    finally:
        cache.close()

    report = audit_json(project, run_id)

    drift = {d["what"]: (d["recorded"], d["now"]) for d in report["drift"]}
    assert drift["python"][0] == "3.9.0"
    assert drift["platform"][0] == "Plan9-4-mips"
    assert drift["distribution numpy"][0] == "1.0.0"
    assert drift["distribution ghostpkg"] == ("0.1", None)
    assert drift["distribution click"][0] is None
    assert drift["numpy_blas"][0] == "reference-blas 3.0"
    assert report["env_id"] == "f" * 32 and report["current_env_id"] != "f" * 32
    assert report["exit"] == 0  # drift alone is reported, not a failure
    load = report["by_name"]["load"]
    assert load["env_id"] == "e" * 32
    assert [d["what"] for d in load["drift"]] == ["python"]
    assert report["by_name"]["scale"]["env_id"] == "f" * 32
    assert report["by_name"]["scale"]["drift"] == []

    text = zencache(project, "audit", run_id, "--steps", "load").stdout
    assert "environment drift since the run (ffffffffffff ->" in text
    assert "python: 3.9.0 -> " in text
    assert "distribution ghostpkg: 0.1 -> (absent)" in text
    assert (
        "load: reproducible\n  it was executed in environment eeeeeeeeeeee, which differs" in text
    )


# --- --twice and deterministic=False --------------------------------------------------------------


def test_twice_tells_nondeterminism_apart(baseline: Path) -> None:
    report = audit_json(baseline, run_id_of(baseline, "noisy"), "--twice", "-j", "2")

    jitter = report["by_name"]["jitter"]
    assert jitter["executions"] == 2
    assert len(set(jitter["outputs"][0]["now"])) == 2
    assert jitter["reason"].startswith("nondeterministic: 2 executions now disagree")
    assert report["by_name"]["load"]["status"] == "reproducible"


def test_twice_tells_drift_apart(baseline: Path) -> None:
    # Recorded with AUDIT_OFFSET=1: a stable step, under other conditions now.
    report = audit_json(
        baseline, run_id_of(baseline, "offset"), "--twice", env={"AUDIT_OFFSET": "2"}
    )

    shift = report["by_name"]["shift"]
    assert shift["status"] == "not reproducible"
    assert len(set(shift["outputs"][0]["now"])) == 1
    assert "executions now agree with each other" in shift["reason"]
    assert shift["outputs"][0]["max_abs_diff"] == pytest.approx(1.0)

    again = audit_json(baseline, run_id_of(baseline, "offset"), env={"AUDIT_OFFSET": "1"})
    assert again["by_name"]["shift"]["status"] == "reproducible" and again["exit"] == 0


def test_a_declared_nondeterministic_step_is_expected(baseline: Path) -> None:
    done = zencache(baseline, "audit", run_id_of(baseline, "declared"), "--steps", "sample")

    assert done.returncode == 0, done.stdout + done.stderr
    assert "sample: nondeterministic: expected: declared @step(deterministic=False)" in done.stdout
    report = audit_json(baseline, run_id_of(baseline, "declared"), "--steps", "sample")
    assert report["by_name"]["sample"]["status"] == "nondeterministic"
    assert report["by_name"]["sample"]["deterministic"] is False
    assert report["ok"] is True


# --- what else makes a step not checkable ----------------------------------------------------------


def test_changed_code_is_not_checkable_and_says_which(project: Path) -> None:
    # A run of the copy, so that its record names the copy's files.
    assert zencache(project, "run", "flow.py:clean", "-p", "factor=5").returncode == 0
    flow = project / "flow.py"
    flow.write_text(flow.read_text().replace("return x * factor", "return x * factor * 1.5"))

    report = audit_json(project, "latest")

    scale = report["by_name"]["scale"]
    assert scale["status"] == "not checkable"
    assert scale["code_changes"] == ["changed code:flow:scale"]
    assert scale["reason"] == "code changed since: changed code:flow:scale"
    assert report["by_name"]["load"]["status"] == "reproducible"


def test_steps_option_and_unknown_names(baseline: Path) -> None:
    run_id = run_id_of(baseline, "clean")
    report = audit_json(baseline, run_id, "--steps", "scale,summarize")
    assert [s["name"] for s in report["steps"]] == ["scale", "summarize"]
    assert report["exit"] == 0

    done = zencache(baseline, "audit", run_id, "--steps", "nope")
    assert done.returncode == 2
    assert "has no step 'nope'; its steps are: load, scale, summarize" in done.stderr


def test_runs_show_json_is_the_provenance_record(baseline: Path) -> None:
    done = zencache(baseline, "runs", "show", run_id_of(baseline, "clean"), "--json")
    record = json.loads(done.stdout)

    assert record["pipeline"] == "clean" and record["environment"]["distributions"]
    assert record["workdir"] == str(baseline) and str(baseline) in record["sys_path"]
    step = next(s for s in record["steps"] if s["name"] == "scale")
    entry = step["entry"]
    assert "code:flow:scale" in entry["code_parts"] and entry["fingerprint"]
    assert set(entry["params"]) == {"factor"}  # verbose is ignored by the key...
    assert set(entry["inputs"]) == {"x"} and set(entry["outputs"]) == {"output"}
    assert entry["materializers"]["output"].startswith("zencache.materializers.numpy:")
    assert entry["param_values"] == {
        "factor": {"json": 2.0},
        "verbose": {"json": True},
    }  # ...not here
    assert entry["module_file"] == str(baseline / "flow.py")
    assert step["duration"] >= 0 and entry["duration"] >= 0


def test_a_non_reproducible_output_is_not_stored_by_the_audit(project: Path) -> None:
    """jitter's audited output (4,800 bytes, over the inline limit) is new: an audit that
    stored it would add an object to the cache it audits."""
    before = cache_snapshot(project)

    done = zencache(project, "audit", run_id_of(project, "noisy"), "--steps", "jitter")

    assert done.returncode == 1, done.stdout + done.stderr
    assert "not reproducible" in done.stdout
    assert cache_snapshot(project) == before


CARRIED = """
import dataclasses

from zencache import pipeline, step


@dataclasses.dataclass
class Config:
    size: int

    def doubled(self):
        return self.size * 2


class Box:
    def __init__(self, side):
        self.side = side

    def area(self):
        return self.side * self.side


@step
def configured(cfg: Config) -> int:
    return cfg.doubled()


@step
def make(side: int) -> object:
    return Box(side)


@step
def measure(box) -> int:
    return box.area()


@pipeline
def carried():
    return configured(cfg=Config(3)), measure(box=make(side=4))
"""


def test_steps_that_carry_classes_audit_clean(tmp_path: Path) -> None:
    # configured carries Config (its parameter's class), measure carries Box (from
    # make's code): the audit must hash the same classes with the step to match.
    (tmp_path / "carry.py").write_text(CARRIED)
    done = zencache(tmp_path, "run", "carry.py:carried")
    assert done.returncode == 0, done.stderr
    done = zencache(tmp_path, "audit", "latest")
    lines = done.stdout.splitlines()
    for name in ("make", "measure"):
        assert any(line.split()[:2] == [name, "reproducible"] for line in lines), done.stdout
    # (configured's dataclass parameter is not recorded in a form an audit can
    # restore; what matters here is that its code is not reported as changed)
    assert "code changed" not in done.stdout, done.stdout
