"""A project on disk for the sound-hit tests: its modules are rewritten between
runs, each run happens in a fresh interpreter (or, for notebook scenarios, in one
interpreter), and every result is compared with a run of the same code on an
empty cache: a hit is sound only if it loads what the edited code computes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

DRIVER = """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
target, cache, executor = sys.argv[2], sys.argv[3], sys.argv[4]
module_name, _, name = target.partition(":")
import importlib
module = importlib.import_module(module_name)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        run = getattr(module, name)().run(cache=cache, executor=executor)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}))
        raise SystemExit(0)
print(json.dumps({
    "steps": {n: s.status for n, s in run.steps.items()},
    "errors": {n: s.error for n, s in run.steps.items() if s.error},
    "output": repr(run.output()),
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}))
"""

SESSION = """
import json, sys, warnings
sys.path.insert(0, sys.argv[1])
CACHE, FRESH = sys.argv[2], sys.argv[3]
from zencache import Cache

def outcome(run):
    return {"steps": {n: s.status for n, s in run.steps.items()}, "output": repr(run.output())}

warnings.simplefilter("ignore")
"""


class Project:
    """Modules under `root/src`; `run()` in a fresh interpreter, `oracle()` the same
    on an empty cache, `session(code)` for several runs in one interpreter."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.src = root / "src"
        self.src.mkdir(parents=True)
        self.cache = root / "cache"
        self.fresh = 0
        (root / "driver.py").write_text(DRIVER)

    def write(self, name: str, text: str) -> None:
        path = self.src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
        # A rewrite within the same second keeps the mtime that a stale .pyc records.
        for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
            pyc.unlink()

    def edit(self, name: str, old: str, new: str) -> None:
        path = self.src / name
        text = path.read_text()
        assert old in text, f"{old!r} not in {name}"
        self.write(name, text.replace(old, new))

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env

    def _driver(self, target: str, cache: Path, executor: str) -> dict:
        done = subprocess.run(
            [
                sys.executable,
                str(self.root / "driver.py"),
                str(self.src),
                target,
                str(cache),
                executor,
            ],
            capture_output=True,
            text=True,
            check=False,
            env=self.env(),
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    def run(self, target: str = "flow:p", executor: str = "local") -> dict:
        return self._driver(target, self.cache, executor)

    def oracle(self, target: str = "flow:p") -> dict:
        self.fresh += 1
        result = self._driver(target, self.root / f"empty-{self.fresh}", "local")
        assert set(result["steps"].values()) == {"executed"}, result
        return result

    def check(
        self,
        executed: list[str],
        cached: list[str],
        target: str = "flow:p",
        executor: str = "local",
    ) -> dict:
        """Run on the project's cache: the statuses as expected, and the output that
        of the same code on an empty cache."""
        result = self.run(target, executor)
        assert "error" not in result, result
        expected = self.oracle(target)
        assert result["output"] == expected["output"], (result, expected)
        check_execution(result, executed, cached)
        return result

    def session(self, code: str) -> dict:
        """Run `code` (after SESSION's prelude) in one fresh interpreter; it prints
        one JSON line, the last of its output."""
        script = self.root / "session.py"
        script.write_text(SESSION + textwrap.dedent(code))
        self.fresh += 1
        done = subprocess.run(
            [
                sys.executable,
                str(script),
                str(self.src),
                str(self.cache),
                str(self.root / f"s{self.fresh}"),
            ],
            capture_output=True,
            text=True,
            check=False,
            env=self.env(),
            timeout=180,
        )
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])


def check_execution(result: dict, executed: list[str], cached: list[str]) -> None:
    statuses = result["steps"]
    assert sorted(n for n, s in statuses.items() if s == "executed") == sorted(executed), result
    assert sorted(n for n, s in statuses.items() if s == "cached") == sorted(cached), result
