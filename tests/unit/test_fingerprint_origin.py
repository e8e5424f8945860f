"""Category 7: what counts as user code. A project module that shadows a standard
one is user code even when only a step imports it; code under the interpreter's
prefix but outside its standard library and site-packages (a src/ checkout
inside a virtualenv) is user code; an installed distribution is name==version."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

from zencache.fingerprint.origin import PYTHON, USER, file_origin

REPO_ROOT = Path(__file__).resolve().parents[2]

SHADOW = """
import json, sys
sys.path.insert(0, sys.argv[1])
from zencache.fingerprint import fingerprint

def step_fn(xs):
    import statistics  # the project's statistics.py, not the standard library's
    return statistics.mean(xs)

print(json.dumps(dict(fingerprint(step_fn).parts)))
"""


def _parts(project: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", SHADOW, str(project)],
        capture_output=True,
        text=True,
        env=env,
        check=True,
        cwd=project,
    )
    import json

    return json.loads(done.stdout)


def test_project_module_shadowing_the_standard_library_is_user_code(tmp_path: Path) -> None:
    module = tmp_path / "statistics.py"
    module.write_text(textwrap.dedent("def mean(xs):\n    return sum(xs) / len(xs)\n"))
    first = _parts(tmp_path)
    assert first.get("code:statistics:mean"), first
    module.write_text(textwrap.dedent("def mean(xs):\n    return max(xs)\n"))
    assert _parts(tmp_path)["code:statistics:mean"] != first["code:statistics:mean"]


def test_code_under_the_prefix_but_outside_the_standard_library_is_user_code() -> None:
    src = os.path.join(sys.prefix, "src", "myproject", "steps.py")
    assert file_origin(src) == USER
    assert (
        file_origin(os.path.join(sysconfig.get_paths()["stdlib"], "json", "__init__.py")) == PYTHON
    )
    site = sysconfig.get_paths()["purelib"]
    assert file_origin(os.path.join(site, "somepkg", "core.py")) == "pkg:somepkg"
