"""`zencache run`, `cache status`, `explain` and `dag` in subprocesses, on real
projects written into tmp_path and a real cache.

One project is run once per module (`baseline`); each test that edits files works
on a copy of it (project and cache), so the edits never leak between tests.
The project:

    flow.py     load -> double -> total      double calls helpers.bump, reads SCALE
    boxed.py    make -> unbox, noisy         make returns a Box (mats.BoxMaterializer),
                                             pinned with version="1"; noisy has cache=False
    broken.py   explode                      raises ValueError("boom")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "zencache"

FLOW = '''
from __future__ import annotations

import threading

import helpers
from zencache import pipeline, step

SCALE = 2


class Offsets:
    offset = 0

    def __init__(self):
        self.lock = threading.Lock()


OFFSETS = Offsets()  # holds a lock, which has no value to hash: listed as untracked


@step
def load(n: int = 3) -> list:
    return list(range(n))


@step
def double(xs: list, factor: int = 2) -> list:
    return [helpers.bump(x) * factor * SCALE for x in xs]


@step
def total(xs: list) -> int:
    return sum(xs) + OFFSETS.offset


@pipeline
def flow(n: int = 3, factor: int = 2):
    xs = load(n=n)
    ys = double(xs=xs, factor=factor)
    return total(xs=ys)


def make_flow(n: int = 3):
    """A plain function that returns a pipeline instance."""
    return flow(n=n, factor=10)


bound = flow(n=1)
'''

HELPERS = """
def bump(x):
    return x + 1
"""

MATS = """
from pathlib import Path

from zencache import BaseMaterializer


class Box:
    def __init__(self, value):
        self.value = value


class BoxMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES = (Box,)
    VERSION = "1"

    def save(self, data):
        (Path(self.uri) / "value.txt").write_text(str(data.value))

    def load(self, data_type):
        return Box(int((Path(self.uri) / "value.txt").read_text()))
"""

BOXED = """
from __future__ import annotations

from mats import Box
from zencache import pipeline, step


@step(version="1")
def make(n: int = 2) -> Box:
    return Box(n)


@step
def unbox(b: Box) -> int:
    return b.value


@step(cache=False)
def noisy() -> int:
    return 1


@pipeline
def boxed():
    noisy()
    return unbox(b=make())
"""

BROKEN = """
from zencache import pipeline, step


@step
def fine() -> int:
    return 1


@step
def explode(x: int) -> int:
    raise ValueError("boom")


@pipeline
def broken():
    return explode(x=fine())
"""

FILES = {
    "flow.py": FLOW,
    "helpers.py": HELPERS,
    "mats.py": MATS,
    "boxed.py": BOXED,
    "broken.py": BROKEN,
    "bad_import.py": "import json\n\nvalue = 1 / 0\n",
    "exits.py": "import sys\n\nsys.exit(3)\n",
    "bad_body.py": "from zencache import pipeline\n\n\n@pipeline\ndef p():\n    return {}['x']\n",
}


def cli(
    cwd: Path, *args: str, cache: Path | None = None, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    """The installed console script (falls back to `python -m zencache`)."""
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zencache"]
    options = ["--cache-dir", str(cache if cache is not None else cwd / "cache")]
    if debug:
        options.append("--debug")
    env = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    # Files are rewritten within one second at the same size: stale .pyc files
    # would run the old code.
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return subprocess.run(
        [*command, *options, *args],
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


def status_of(cwd: Path, target: str, *params: str) -> dict[str, tuple[str, list[str]]]:
    out = ok(cli(cwd, "cache", "status", target, *params, "--json"))
    return {s["step"]: (s["status"], s["reasons"]) for s in json.loads(out)}


def rewrite(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The project, run once: flow.py:flow and boxed.py:boxed."""
    root = tmp_path_factory.mktemp("project")
    for name, text in FILES.items():
        (root / name).write_text(textwrap.dedent(text).lstrip())
    first = ok(cli(root, "run", "flow.py:flow"))
    ok(cli(root, "run", "boxed.py:boxed"))
    return root, first


@pytest.fixture
def project(baseline: tuple[Path, str], tmp_path: Path) -> Path:
    """A private copy of the baseline project and its cache."""
    copy = tmp_path / "project"
    shutil.copytree(baseline[0], copy)
    return copy


# --- run ---------------------------------------------------------------------------------------


def test_run_prints_a_table_then_a_rerun_is_all_cached(baseline: tuple[Path, str]) -> None:
    root, first = baseline
    lines = first.splitlines()
    assert lines[0].split() == ["step", "status", "duration", "key"]
    assert [line.split()[:2] for line in lines[1:4]] == [
        ["load", "executed"],
        ["double", "executed"],
        ["total", "executed"],
    ]
    assert all(len(line.split()[-1]) == 12 for line in lines[1:4])
    assert "run " in first and "completed (3 executed)" in first
    assert "output: 24" in first  # (1+2+3) * 2 * 2

    again = cli(root, "run", "flow.py:flow")
    out = ok(again)
    assert [line.split()[1] for line in out.splitlines()[1:4]] == ["cached"] * 3
    assert "completed (3 cached)" in out
    # not a TTY: one plain progress line per step on stderr
    progress = [line for line in again.stderr.splitlines() if line.startswith("[")]
    assert progress[0].startswith("[1/3] load cached")
    assert status_of(root, "flow.py:flow") == {
        "load": ("cached", []),
        "double": ("cached", []),
        "total": ("cached", []),
    }


def test_run_with_params_and_a_function_target(project: Path) -> None:
    out = ok(cli(project, "run", "flow.py:flow", "-p", "factor=3"))
    assert [line.split()[1] for line in out.splitlines()[1:4]] == [
        "cached",
        "executed",
        "executed",
    ]
    assert "output: 36" in out
    out = ok(cli(project, "run", "flow.py:make_flow", "-p", "n=2"))
    assert "output: 60" in out  # (1+2) * 10 * 2


def test_module_target_is_found_from_the_current_directory(project: Path) -> None:
    assert status_of(project, "flow:flow")["load"] == ("cached", [])


def test_a_failing_step_exits_1_naming_the_step_and_error(project: Path) -> None:
    result = cli(project, "run", "broken.py:broken")
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: step 'explode'") and "ValueError: boom" in last
    assert "Traceback" not in result.stderr
    assert "fine" in result.stdout and "failed" in result.stdout  # the partial table
    debug = cli(project, "run", "broken.py:broken", debug=True)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr and 'raise ValueError("boom")' in debug.stderr


# --- cache status: one kind of change at a time -------------------------------------------------


def test_status_of_a_never_run_pipeline_is_new_with_the_exact_json_shape(project: Path) -> None:
    result = cli(project, "cache", "status", "flow.py:flow", "--json", cache=project / "fresh")
    data = json.loads(ok(result))
    # what a step reads that its fingerprint cannot see is listed, only when there is some
    untracked = data[2].pop("untracked")
    assert len(untracked) == 1 and "global 'OFFSETS'" in untracked[0]
    assert data == [
        {"step": "load", "status": "new", "reasons": []},
        {"step": "double", "status": "new", "reasons": []},
        {"step": "total", "status": "new", "reasons": []},
    ]
    assert not (project / "fresh").exists()  # a status check creates no cache
    text = ok(cli(project, "cache", "status", "flow.py:flow", cache=project / "fresh"))
    assert [line.split()[:3] for line in text.splitlines()] == [
        ["load", "new"],
        ["double", "new"],
        ["total", "new", "note:"],
    ]


def test_status_step_body_change(project: Path) -> None:
    rewrite(project / "flow.py", "* factor * SCALE", "* SCALE * factor")
    status = status_of(project, "flow.py:flow")
    assert status["load"] == ("cached", [])
    assert status["double"] == (
        "stale",
        ["code changed: double (step function `double` in flow.py)"],
    )
    assert status["total"] == (
        "stale",
        [
            "input xs: upstream double will rerun (early cutoff may still spare this step "
            "if it produces identical data)"
        ],
    )
    text = ok(cli(project, "cache", "status", "flow.py:flow"))
    assert text.splitlines()[1].split(None, 2) == [
        "double",
        "stale",
        "code changed: double (step function `double` in flow.py)",
    ]


def test_status_helper_change_in_another_module(project: Path) -> None:
    rewrite(project / "helpers.py", "x + 1", "x + 2")
    status = status_of(project, "flow.py:flow")
    assert status["double"] == ("stale", ["code changed: double (helper `bump` in helpers.py)"])
    assert status["total"][0] == "stale"


def test_status_module_constant_change(project: Path) -> None:
    rewrite(project / "flow.py", "SCALE = 2", "SCALE = 5")
    status = status_of(project, "flow.py:flow")
    assert status["double"] == (
        "stale",
        ["code changed: double (constant `SCALE` in flow.py, now 5)"],
    )


def test_status_parameter_change_and_upstream_propagation(project: Path) -> None:
    status = status_of(project, "flow.py:flow", "-p", "factor=3")
    assert status["load"] == ("cached", [])
    assert status["double"] == ("stale", ["parameter factor: 2 -> 3"])
    status = status_of(project, "flow.py:flow", "-p", "n=4")
    assert status["load"] == ("stale", ["parameter n: 3 -> 4"])
    assert status["double"][1] == [
        "input xs: upstream load will rerun (early cutoff may still spare this step "
        "if it produces identical data)"
    ]
    assert status["total"][1][0].startswith("input xs: upstream double will rerun")


def test_status_version_pin_materializer_version_and_cache_false(project: Path) -> None:
    assert status_of(project, "boxed.py:boxed") == {
        "noisy": ("stale", ["cache=False: always executes"]),
        "make": ("cached", []),
        "unbox": ("cached", []),
    }
    rewrite(project / "boxed.py", 'version="1"', 'version="2"')
    rewrite(project / "mats.py", 'VERSION = "1"', 'VERSION = "2"')
    status = status_of(project, "boxed.py:boxed")
    assert status["make"] == (
        "stale",
        [
            "code pinned: version 1 -> 2",
            "materializer changed: output output (BoxMaterializer version 1 -> 2)",
        ],
    )
    assert status["unbox"][1][0].startswith("input b: upstream make will rerun")


# --- explain and dag ------------------------------------------------------------------------------


def test_explain_shows_parts_diff_and_untracked(project: Path) -> None:
    data = json.loads(
        ok(cli(project, "explain", "flow.py:flow", "double", "-p", "factor=3", "--json"))
    )
    assert data["step"] == "double" and data["status"] == "stale"
    assert data["identity"] == "flow:double"
    parts = data["code"]["parts"]
    assert {"code:flow:double", "code:helpers:bump", "const:flow:SCALE", "python"} <= set(parts)
    assert data["params"]["factor"]["repr"] == "3"
    assert data["inputs"]["xs"]["from"] == "load.output"
    assert len(data["inputs"]["xs"]["content_id"]) == 32
    assert len(data["key"]) == 32 and data["key"] != data["previous"]["key"]
    assert data["changes"] == [
        {
            "kind": "parameter",
            "name": "factor",
            "before": "2",
            "after": "3",
            "message": "parameter factor: 2 -> 3",
        }
    ]
    total = json.loads(ok(cli(project, "explain", "flow.py:flow", "total", "--json")))
    assert total["status"] == "cached" and total["changes"] == []
    assert any("OFFSETS" in note for note in total["untracked"])

    text = ok(cli(project, "explain", "flow.py:flow", "double", "-p", "factor=3"))
    assert "code:helpers:bump" in text
    assert "changes since then:" in text and "parameter factor: 2 -> 3" in text
    assert "last recorded key:" in text


def test_dag_in_three_formats(project: Path) -> None:
    text = ok(cli(project, "dag", "flow.py:flow", "-p", "factor=3"))
    assert text.splitlines()[0] == "pipeline flow"
    assert [line.split()[:2] for line in text.splitlines()[1:]] == [
        ["load", "[cached]"],
        ["double", "[stale]"],
        ["total", "[stale]"],
    ]
    assert "<- load (xs)" in text
    mermaid = ok(cli(project, "dag", "flow.py:flow", "--format", "mermaid"))
    assert mermaid.startswith("flowchart TD")
    assert '["load<br/>cached"]' in mermaid and "-->" in mermaid
    dot = ok(cli(project, "dag", "flow.py:flow", "--format", "dot"))
    assert dot.startswith('digraph "flow" {') and dot.rstrip().endswith("}")
    assert '"load" -> "double"' in dot


# --- errors: exit 2, one line, no traceback -------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["cache", "status", "flow.py"], "malformed"),
        (["cache", "status", "nowhere/flow.py:flow"], "cannot open nowhere/flow.py"),
        (["cache", "status", "no_such_module:flow"], "module 'no_such_module' not found"),
        (["run", "bad_import.py:p"], "importing module 'bad_import' failed: ZeroDivisionError"),
        (["cache", "status", "exits.py:p"], "called sys.exit(3)"),
        (["dag", "bad_body.py:p"], "tracing pipeline 'p' failed: KeyError: 'x' (at bad_body.py:6)"),
        (["cache", "status", "flow.py:nope"], "has no attribute 'nope'; it defines the pipelines"),
        (["cache", "status", "flow.py:SCALE"], "is of type int, not a pipeline"),
        (["cache", "status", "flow.py:double"], "is a step, not a pipeline"),
        (["cache", "status", "flow.py:flow", "-p", "gamma=1"], "no parameter 'gamma'"),
        (["cache", "status", "flow.py:bound", "-p", "n=2"], "already bound"),
        (["cache", "status", "flow.py:flow", "-p", "n"], "is not name=value"),
        (["explain", "flow.py:flow", "nope"], "has no step 'nope'; its steps are load"),
        (["run", "--executor", "nope", "flow.py:flow"], "unknown executor 'nope'"),
    ],
)
def test_errors_exit_2_with_one_line(project: Path, args: list[str], expected: str) -> None:
    result = cli(project, *args)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_param_lists_the_valid_ones(project: Path) -> None:
    result = cli(project, "cache", "status", "flow.py:flow", "-p", "gamma=1")
    assert "its parameters are: n, factor" in result.stderr


def test_missing_attribute_lists_the_pipelines(project: Path) -> None:
    result = cli(project, "cache", "status", "flow.py:nope")
    assert "it defines the pipelines bound, flow; use e.g. flow.py:bound" in result.stderr


def test_debug_shows_the_traceback_of_an_import_error(project: Path) -> None:
    result = cli(project, "cache", "status", "bad_import.py:p", debug=True)
    assert result.returncode == 2
    assert "Traceback" in result.stderr and "1 / 0" in result.stderr


# --- the seed's example ---------------------------------------------------------------------------


def test_digits_example_run_and_status(tmp_path: Path) -> None:
    target = "examples/digits/pipeline.py:seed_pipeline"
    out = ok(cli(REPO, "run", target, cache=tmp_path / "cache"))
    assert "accuracy" not in out and "output: 0.98" in out
    result = cli(
        REPO, "cache", "status", target, "-p", "gamma=0.01", "--json", cache=tmp_path / "cache"
    )
    status = {s["step"]: (s["status"], s["reasons"]) for s in json.loads(ok(result))}
    assert status["importer"] == ("cached", [])
    assert status["trainer"] == ("stale", ["parameter gamma: 0.001 -> 0.01"])
    assert status["evaluator"][0] == "stale"
    assert status["evaluator"][1][0].startswith("input model: upstream trainer will rerun")


def test_help_is_light_and_python_m_works(tmp_path: Path) -> None:
    probe = (
        "import sys, zencache.cli; "
        "heavy = {'numpy', 'sklearn', 'joblib', 'zencache.inspection.status', 'zencache.executors'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert loaded.stdout.strip() == "[]"
    result = subprocess.run(
        [sys.executable, "-m", "zencache", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    for command in ("run", "explain", "dag", "cache"):
        assert f"  {command} " in result.stdout


def test_click_usage_errors_are_one_line_with_exit_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            str(Path(sys.executable).parent / "zencache"),
            "--cache-dir",
            str(tmp_path / "c"),
            "cache",
            "gc",
            "--keep-last",
            "-1",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "--keep-last" in done.stderr and "--help" in done.stderr
