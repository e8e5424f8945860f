"""Category 5: lookups the static walk cannot follow are never silent. Literal
lookups by name are followed; module-level objects are hashed by their state;
what still cannot be tracked is a warning from run (once per step and cause), a
note next to the status in `cache status`, and an error in strict mode."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sound_harness import Project

HELPERS = """
def scale(x):
    return x * 10
"""

LOOKUPS = {
    "globals()[literal]": ("from helpers import scale", 'globals()["scale"](x)'),
    "globals().get(literal)": ("from helpers import scale", 'globals().get("scale")(x)'),
    "importlib.import_module(literal)": (
        "import importlib",
        'importlib.import_module("helpers").scale(x)',
    ),
    "sys.modules[literal]": ("import sys, helpers", 'sys.modules["helpers"].scale(x)'),
    "getattr(module, literal)": ("import helpers", 'getattr(helpers, "scale")(x)'),
}

FLOW = """
{imports}
from zencache import pipeline, step


@step
def work(x: int = 3) -> int:
    return {call}


@pipeline
def p():
    return work()
"""


@pytest.mark.parametrize("lookup", sorted(LOOKUPS))
def test_lookup_by_literal_name_is_followed(tmp_path: Path, lookup: str) -> None:
    imports, call = LOOKUPS[lookup]
    project = Project(tmp_path)
    project.write("helpers.py", HELPERS)
    project.write("flow.py", FLOW.format(imports=imports, call=call))
    first = project.run()
    assert first["steps"] == {"work": "executed"} and first["warnings"] == [], first
    project.check(executed=[], cached=["work"])
    project.edit("helpers.py", "x * 10", "x * 11")
    project.check(executed=["work"], cached=[])


VALUES = {
    "plain object": (
        "class Settings:\n    def __init__(self):\n        self.k = 2\nVALUE = Settings()",
        "VALUE.k",
        ("self.k = 2", "self.k = 5"),
    ),
    "SimpleNamespace": (
        "import types\nVALUE = types.SimpleNamespace(k=2)",
        "VALUE.k",
        ("k=2", "k=5"),
    ),
    "date": ("import datetime\nVALUE = datetime.date(2024, 1, 2)", "VALUE.day", ("1, 2)", "1, 5)")),
    "random generator": (
        "import random\nVALUE = random.Random(2)",
        "VALUE.randint(0, 1000)",
        ("Random(2)", "Random(5)"),
    ),
    "name put into builtins": (
        "import builtins\nbuiltins.VALUE = lambda: 2",
        "VALUE()",
        ("lambda: 2", "lambda: 5"),
    ),
}


@pytest.mark.parametrize("kind", sorted(VALUES))
def test_module_level_objects_are_hashed_by_state(tmp_path: Path, kind: str) -> None:
    setup, read, (old, new) = VALUES[kind]
    project = Project(tmp_path)
    project.write("flow.py", setup + "\n" + FLOW.format(imports="", call=read + " + x"))
    first = project.run()
    assert first["steps"] == {"work": "executed"} and first["warnings"] == [], first
    project.check(executed=[], cached=["work"])
    project.edit("flow.py", old, new)
    project.check(executed=["work"], cached=[])


COMPUTED = """
import helpers
from zencache import pipeline, step


@step{options}
def work(name: str = "scale") -> int:
    return getattr(helpers, name)(3)


@pipeline
def p():
    return work()
"""


def _cli(
    project: Project, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "zencache", "--cache-dir", str(project.cache), *args],
        capture_output=True,
        text=True,
        cwd=project.src,
        env={**project.env(), **(env or {})},
        check=False,
        timeout=120,
    )


def test_computed_lookup_warns_once_and_status_notes_it(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("helpers.py", HELPERS)
    project.write("flow.py", COMPUTED.format(options=""))
    first = project.run()
    untracked = [w for w in first["warnings"] if w.startswith("UntrackedInputWarning")]
    assert len(untracked) == 1, first
    assert "step 'work'" in untracked[0] and "by a computed name" in untracked[0]
    status = _cli(project, "cache", "status", "flow.py:p")
    assert status.returncode == 0, status.stderr
    line = next(line for line in status.stdout.splitlines() if line.startswith("work"))
    assert "cached" in line and "note: not tracked" in line and "computed name" in line, line


def test_strict_step_refuses_to_run(tmp_path: Path) -> None:
    project = Project(tmp_path)
    project.write("helpers.py", HELPERS)
    project.write("flow.py", COMPUTED.format(options="(strict=True)"))
    result = project.run()
    assert result["error"].startswith("UntrackedInputError: step 'work' is strict"), result
    assert "version=" in result["error"]


@pytest.mark.parametrize("how", ["pyproject", "environment"])
def test_project_strict_setting_refuses_to_run(tmp_path: Path, how: str) -> None:
    project = Project(tmp_path)
    project.write("helpers.py", HELPERS)
    project.write("flow.py", COMPUTED.format(options=""))
    env = {}
    if how == "pyproject":
        (project.src / "pyproject.toml").write_text("[tool.zencache]\nstrict = true\n")
    else:
        env = {"ZENCACHE_STRICT": "1"}
    run = _cli(project, "run", "flow.py:p", env=env)
    assert run.returncode == 2, (run.stdout, run.stderr)
    assert "is strict" in run.stderr and "Traceback" not in run.stderr
    # A pinned version is the escape hatch: nothing is left untracked.
    project.write("flow.py", COMPUTED.format(options='(version="1")'))
    assert _cli(project, "run", "flow.py:p", env=env).returncode == 0
