"""Everyday use of the CLI, in subprocesses on real projects under tmp_path: project
discovery from a subfolder, `init` and `config`, commands that inspect executing
nothing, `-p` checked against annotations, output that pipes, `--json` that stays
pure, global options after the command, colours, and the live progress line on a
pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

SCRIPT = Path(sys.executable).parent / "zencache"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "zencache"]

FLOW = """
from __future__ import annotations

from zencache import pipeline, step


@step
def load(n: int = 3) -> list:
    return list(range(n))


@step
def total(xs: list) -> int:
    return sum(xs)


@pipeline
def flow(n: int = 3):
    return total(xs=load(n=n))
"""

# Prints at import and runs its pipeline unguarded (as the seed's notebook ends);
# every step leaves a marker file when it executes.
NOISY = """
from pathlib import Path

from zencache import pipeline, step

print("hello from the module")


@step
def first() -> int:
    Path("executed-first").write_text("x")
    print("first says hi")
    return 1


@step
def second(x: int) -> int:
    Path("executed-second").write_text("x")
    return x + 1


@pipeline
def noisy():
    return second(x=first())


result = noisy().run()
print("the module ran")


@pipeline
def defined_after():
    return second(x=first())
"""

TYPED = """
from __future__ import annotations

import enum
from pathlib import Path
from typing import Literal, Optional

from zencache import pipeline, step


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


@step
def show(
    rate: float, count: int, verbose: bool, label: str, path: Path, limit: Optional[int],
    mode: Literal["fast", "slow"], color: Color, sizes: list,
) -> str:
    return repr((rate, count, verbose, label, path.name, limit, mode, color.name, sizes))


@pipeline
def typed(
    rate: float = 0.5, count: int = 1, verbose: bool = False, label: str = "x",
    path: Path = Path("a.txt"), limit: Optional[int] = None,
    mode: Literal["fast", "slow"] = "fast", color: Color = Color.RED, sizes: list = [],
):
    return show(rate=rate, count=count, verbose=verbose, label=label, path=path, limit=limit,
                mode=mode, color=color, sizes=sizes)
"""

SLOW = """
import time

from zencache import pipeline, step


@step
def warmup() -> int:
    return 1


@step
def slow_step(x: int) -> int:
    print("output from the slow step")
    time.sleep(1.2)
    return x + 1


@pipeline
def slow():
    return slow_step(x=warmup())
"""


def env(**extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("ZENCACHE_") and k not in ("NO_COLOR", "FORCE_COLOR")
    }
    base["PYTHONDONTWRITEBYTECODE"] = "1"
    return {**base, **extra}


def cli(cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=env(**extra),
        timeout=120,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    for name, text in {"flow.py": FLOW, "noisy.py": NOISY, "typed.py": TYPED}.items():
        (root / name).write_text(text)
    return root


# --- the project, found like git finds one ------------------------------------------------------


def test_a_subfolder_uses_the_projects_cache(project: Path) -> None:
    ok(cli(project, "run", "flow.py:flow"))
    assert (project / ".zencache").is_dir()
    sub = project / "sub" / "deeper"
    statuses = json.loads(ok(cli(sub, "cache", "status", "../../flow.py:flow", "--json")))
    assert {s["status"] for s in statuses} == {"cached"}
    out = ok(cli(sub, "run", "../../flow.py:flow", "--json"))
    assert {s["status"] for s in json.loads(out)["steps"]} == {"cached"}
    assert not (sub / ".zencache").exists() and not (project / "sub" / ".zencache").exists()
    assert len(json.loads(ok(cli(sub, "runs", "ls", "--json")))) == 2


def test_init_creates_the_cache_once_and_says_where(project: Path) -> None:
    sub = project / "sub"
    first = cli(sub, "init")
    assert first.returncode == 0
    assert f"initialized an empty cache in {project / '.zencache'}" in first.stdout
    assert (project / ".zencache" / "index.lmdb").is_dir()
    again = cli(sub, "init")
    assert again.returncode == 0 and "already initialized" in again.stdout
    other = cli(sub, "init", "elsewhere")
    assert other.returncode == 0 and (sub / "elsewhere" / ".zencache" / "CACHEDIR.TAG").exists()
    # the nearest .zencache is found from below, up to the project marker
    config = json.loads(ok(cli(sub / "deeper", "config", "--json")))
    assert config["settings"]["cache_dir"] == {
        "value": str(project / ".zencache"),
        "source": "found",
        "env": "ZENCACHE_DIR",
    }


def test_config_shows_each_value_and_where_it_came_from(project: Path) -> None:
    (project / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [project]
            name = "demo"

            [tool.zencache]
            cache_dir = "build/cache"
            executor = "processes"
            workers = 3
            max_size = "2GB"
            hooks = ["mypkg.hooks:Notify"]
            """
        )
    )
    out = json.loads(ok(cli(project / "sub", "config", "--json", ZENCACHE_STRICT="1")))
    settings = out["settings"]
    pyproject = str(project / "pyproject.toml")
    assert settings["cache_dir"]["value"] == str(project / "build" / "cache")
    assert settings["cache_dir"]["source"] == pyproject
    assert settings["executor"] == {
        "value": "processes",
        "source": pyproject,
        "env": "ZENCACHE_EXECUTOR",
    }
    assert settings["workers"]["value"] == 3
    assert settings["max_size"]["value"] == 2_000_000_000
    assert settings["hooks"]["value"] == ["mypkg.hooks:Notify"]
    assert settings["strict"] == {
        "value": True,
        "source": "ZENCACHE_STRICT",
        "env": "ZENCACHE_STRICT",
    }
    assert settings["remote"]["source"] == "default"
    assert out["project"] == {"root": str(project), "pyproject": pyproject}
    text = ok(cli(project, "config", "--cache-dir", "/tmp/elsewhere"))
    assert re.search(r"cache_dir\s+/tmp/elsewhere\s+option", text)
    assert re.search(r"executor\s+processes\s+.*pyproject\.toml", text)
    assert ok(cli(project, "config", "workers")) == "3\n"
    bad = cli(project, "config", ZENCACHE_WORKERS="many")
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "error: ZENCACHE_WORKERS is 'many'; use a whole number of workers of 1 or more"
    ]


PIDS = """
import os

from zencache import pipeline, step


@step(cache=False)
def where() -> int:
    return os.getpid()


@pipeline
def pids():
    return where()
"""


def test_run_takes_its_default_executor_from_the_settings(project: Path) -> None:
    (project / "pids.py").write_text(PIDS)
    (project / "pyproject.toml").write_text(
        '[project]\nname = "demo"\n\n[tool.zencache]\nexecutor = "processes"\nworkers = 1\n'
    )
    code = "import os, pids; r = pids.pids().run(); print(r.steps['where'].output() != os.getpid())"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert done.stdout.strip() == "True", done.stderr  # ran in a worker process
    local = (
        "import os, pids; r = pids.pids().run(executor='local'); "
        "print(r.steps['where'].output() == os.getpid())"
    )
    done = subprocess.run(
        [sys.executable, "-c", local],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert done.stdout.strip() == "True", done.stderr  # the argument wins
    # the CLI: ZENCACHE_EXECUTOR overrides the file, --executor overrides both
    bad = cli(project, "run", "pids.py:pids", ZENCACHE_EXECUTOR="nope")
    assert bad.returncode == 2 and "ZENCACHE_EXECUTOR is 'nope'" in bad.stderr
    out = json.loads(ok(cli(project, "run", "pids.py:pids", "--executor", "local", "--json")))
    assert out["status"] == "completed"


def test_global_options_are_accepted_after_the_command(project: Path) -> None:
    elsewhere = project / "elsewhere"
    ok(cli(project, "run", "flow.py:flow", "--cache-dir", str(elsewhere)))
    assert (elsewhere / "index.lmdb").is_dir() and not (project / ".zencache").exists()
    stats = json.loads(ok(cli(project, "cache", "stats", "--cache-dir", str(elsewhere), "--json")))
    assert stats  # read the same cache
    runs = json.loads(ok(cli(project, "runs", "ls", "--json", f"--cache-dir={elsewhere}")))
    assert len(runs) == 1
    broken = cli(project, "cache", "status", "flow.py:nope", "--debug")
    assert broken.returncode == 2 and "Traceback" in broken.stderr


# --- commands that inspect never execute -----------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["cache", "status", "noisy.py:noisy"],
        ["cache", "status", "noisy.py:defined_after", "--json"],
        ["explain", "noisy.py:noisy", "second"],
        ["explain", "noisy.py:noisy", "second", "--json"],
        ["dag", "noisy.py:noisy"],
        ["dag", "noisy.py:noisy", "--json"],
    ],
)
def test_inspecting_a_module_that_runs_at_import_executes_nothing(
    project: Path, command: list[str]
) -> None:
    done = cli(project, *command)
    assert done.returncode == 0, done.stderr
    assert not (project / "executed-first").exists()
    assert not (project / "executed-second").exists()
    assert "runs pipeline 'noisy' when imported; not executed" in done.stderr
    if "--json" in command:
        json.loads(done.stdout)  # pure: the module's print went to stderr
        assert "hello from the module" in done.stderr
    assert not (project / ".zencache").exists()  # nothing recorded: not even a cache made


def test_a_module_that_uses_the_skipped_runs_result_keeps_what_it_defined(project: Path) -> None:
    uses = NOISY.replace('print("the module ran")', 'print("it ran:", result.steps["second"])')
    (project / "uses.py").write_text(uses)
    done = cli(project, "cache", "status", "uses.py:noisy", "--json")
    assert done.returncode == 0, done.stderr
    assert [s["status"] for s in json.loads(done.stdout)] == ["new", "new"]
    assert "its import stopped at uses.py:" in done.stderr
    after = cli(project, "cache", "status", "uses.py:defined_after")
    assert after.returncode == 2
    assert "has no attribute 'defined_after'; its import stopped at uses.py:" in after.stderr
    assert not (project / "executed-first").exists()


def test_run_runs_the_target_once_not_the_modules_own_run_too(project: Path) -> None:
    out = cli(project, "run", "noisy.py:noisy", "--json")
    assert out.returncode == 0, out.stderr
    document = json.loads(out.stdout)
    assert [s["status"] for s in document["steps"]] == ["executed", "executed"]
    assert document["output"] == 2
    assert "first says hi" in out.stderr and "first says hi" not in out.stdout
    assert len(json.loads(ok(cli(project, "runs", "ls", "--json")))) == 1


# --- -p checked against annotations ------------------------------------------------------------


@pytest.mark.parametrize(
    ("param", "expected"),
    [
        ("rate=abc", "-p rate='abc': parameter 'rate' of pipeline 'typed' expects float"),
        ("count=abc", "-p count='abc': parameter 'count' of pipeline 'typed' expects int"),
        ("count=2.5", "-p count='2.5': parameter 'count' of pipeline 'typed' expects int"),
        (
            "verbose=maybe",
            "-p verbose='maybe': parameter 'verbose' of pipeline 'typed' expects bool",
        ),
        (
            "limit=lots",
            "-p limit='lots': parameter 'limit' of pipeline 'typed' expects int or None",
        ),
        ("mode=medium", "parameter 'mode' of pipeline 'typed' expects one of 'fast', 'slow'"),
        ("color=green", "parameter 'color' of pipeline 'typed' expects a Color (RED, BLUE)"),
        ("sizes=3", "parameter 'sizes' of pipeline 'typed' expects a JSON list"),
        ("path=", "parameter 'path' of pipeline 'typed' expects a path"),
    ],
)
def test_a_parameter_that_does_not_fit_its_annotation_is_refused_before_anything_runs(
    project: Path, param: str, expected: str
) -> None:
    done = cli(project, "run", "typed.py:typed", "-p", param)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], done.stderr
    assert lines[0].startswith("error: -p ")
    assert (
        not (project / ".zencache").exists()
        or json.loads(ok(cli(project, "runs", "ls", "--json"))) == []
    )


def test_parameters_that_fit_are_converted_to_their_annotation(project: Path) -> None:
    out = json.loads(
        ok(
            cli(
                project,
                "run",
                "typed.py:typed",
                "--json",
                "-p",
                "rate=1",
                "-p",
                "count=1e3",
                "-p",
                "verbose=yes",
                "-p",
                "label=2024",
                "-p",
                "path=data/in.csv",
                "-p",
                "limit=none",
                "-p",
                "mode=slow",
                "-p",
                "color=blue",
                "-p",
                "sizes=[1, 2]",
            )
        )
    )
    assert out["output"] == repr((1.0, 1000, True, "2024", "in.csv", None, "slow", "BLUE", [1, 2]))
    again = json.loads(ok(cli(project, "run", "typed.py:typed", "--json", "-p", "limit=7")))
    assert "7, 'fast', 'RED', []" in again["output"]


# --- output that pipes, JSON, colours ------------------------------------------------------


def test_output_piped_into_head_ends_quietly_like_git(project: Path) -> None:
    many = "\n".join(
        [
            "from zencache import pipeline, step",
            "@step",
            "def s(i: int) -> int:",
            "    return i",
            "@pipeline",
            "def wide():",
            "    for i in range(400):",
            "        s(i=i)",
        ]
    )
    (project / "wide.py").write_text(many + "\n")
    ok(cli(project, "run", "wide.py:wide"))
    for command in (
        "runs show latest",
        "dag wide.py:wide",
        "cache status wide.py:wide",
        "cache ls",
        "runs show latest --json",
    ):
        done = subprocess.run(
            ["bash", "-o", "pipefail", "-c", f"{' '.join(COMMAND)} {command} | head -1"],
            cwd=project,
            capture_output=True,
            text=True,
            env=env(),
            timeout=120,
        )
        assert done.stdout.count("\n") == 1, (command, done.stdout)
        for word in ("error", "Error", "Exception"):
            assert word not in done.stderr, (command, done.stderr)
        assert done.returncode in (0, 141), (command, done.returncode)


def test_every_listing_has_json_and_dag_json_has_the_edges(project: Path) -> None:
    run = json.loads(ok(cli(project, "run", "flow.py:flow", "--json")))
    assert run["pipeline"] == "flow" and run["status"] == "completed"
    assert [(s["step"], s["status"]) for s in run["steps"]] == [
        ("load", "executed"),
        ("total", "executed"),
    ]
    assert run["output"] == 3 and len(run["steps"][0]["key"]) == 32
    dag = json.loads(ok(cli(project, "dag", "flow.py:flow", "--json")))
    assert dag == {
        "pipeline": "flow",
        "steps": [
            {"step": "load", "status": "cached", "inputs": []},
            {
                "step": "total",
                "status": "cached",
                "inputs": [{"name": "xs", "from": "load", "output": "output"}],
            },
        ],
    }
    (project / "broken.py").write_text(
        "from zencache import pipeline, step\n\n\n@step\ndef explode() -> int:\n"
        "    print('about to fail')\n    raise ValueError('boom')\n\n\n@pipeline\n"
        "def broken():\n    explode()\n"
    )
    failed = cli(project, "run", "broken.py:broken", "--json")
    assert failed.returncode == 1
    document = json.loads(failed.stdout)
    assert document["status"] == "failed" and document["run_id"]
    assert document["steps"][0]["status"] == "failed" and len(document["steps"][0]["key"]) == 32
    assert "about to fail" in failed.stderr and "error: step 'explode'" in failed.stderr
    for command in (
        ["runs", "ls"],
        ["runs", "show", "latest"],
        ["cache", "ls"],
        ["cache", "stats"],
        ["cache", "status", "flow.py:flow"],
        ["explain", "flow.py:flow", "total"],
        ["lineage", f"{run['run_id']}:total"],
        ["config"],
    ):
        json.loads(ok(cli(project, *command, "--json")))


def test_colours_follow_no_color_and_force_color(project: Path) -> None:
    ok(cli(project, "run", "flow.py:flow"))
    plain = ok(cli(project, "cache", "status", "flow.py:flow"))
    assert "\x1b[" not in plain  # piped: plain
    forced = ok(cli(project, "cache", "status", "flow.py:flow", FORCE_COLOR="1"))
    assert "\x1b[32mcached" in forced
    both = ok(cli(project, "cache", "status", "flow.py:flow", FORCE_COLOR="1", NO_COLOR="1"))
    assert "\x1b[" in both  # FORCE_COLOR wins, as force-color.org says
    table = ok(cli(project, "run", "flow.py:flow", FORCE_COLOR="1"))
    assert "\x1b[32mcached" in table
    no = ok(cli(project, "dag", "flow.py:flow", NO_COLOR="1"))
    assert "\x1b[" not in no


def _run_on_a_terminal(cwd: Path, *args: str, **extra: str) -> tuple[int, str]:
    """Run the CLI with stdin, stdout and stderr on a pseudo-terminal; all it wrote."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=env(COLUMNS="200", TERM="xterm", **extra),
        close_fds=True,
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:  # the follower side closed: the process exited
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    os.close(leader)
    return process.wait(timeout=30), b"".join(chunks).decode("utf-8", "replace")


def test_the_progress_line_on_a_terminal(project: Path) -> None:
    (project / "slow.py").write_text(SLOW)
    code, text = _run_on_a_terminal(project, "run", "slow.py:slow")
    assert code == 0, text
    # the live line: steps done, the time elapsed, and the step running now
    assert re.search(r"\[1/2\] \d+\.\d s  running slow_step", text), text
    elapsed = [float(x) for x in re.findall(r"\[1/2\] (\d+\.\d) s", text)]
    assert max(elapsed) >= 1.0  # redrawn while the step runs
    # the step's print starts on a line of its own, never glued to the progress line
    assert re.search(r"(\r\x1b\[K|\n)output from the slow step", text), repr(text)
    assert not re.search(r"running slow_step[^\r\n]*output from", text)
    # and the table comes after the line is taken down
    assert re.search(r"\r\x1b\[Kstep\s+status", text) or "\nstep " in text
    assert "slow_step  executed" in text.replace("\x1b[36m", "").replace("\x1b[0m", "")
    # piped, the same run prints one plain line per step and no control characters
    piped = cli(project, "run", "slow.py:slow")
    assert "\x1b" not in piped.stderr + piped.stdout
    assert "[2/2] slow_step cached" in piped.stderr


def test_workers_do_not_run_the_pipeline_a_module_runs_at_import(project: Path) -> None:
    # The worker imports the module to find the step; the module's own run() would
    # wait for leases the driver holds (it hung before).
    done = cli(project, "run", "noisy.py:noisy", "--executor", "processes", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert re.search(r"first\s+executed", done.stdout) and re.search(
        r"second\s+executed", done.stdout
    )
    assert len(json.loads(ok(cli(project, "runs", "ls", "--json")))) == 1


def test_shell_completion_completes_commands_and_choices(project: Path) -> None:
    def complete(words: str, cword: int) -> list[str]:
        done = cli(
            project, _ZENCACHE_COMPLETE="bash_complete", COMP_WORDS=words, COMP_CWORD=str(cword)
        )
        return [line.partition(",")[2] for line in done.stdout.splitlines()]

    assert complete("zencache ca", 1) == ["cache"]
    assert complete("zencache cache st", 2) == ["stats", "status"]
    assert complete("zencache config w", 2) == ["workers"]
    source = cli(project, _ZENCACHE_COMPLETE="bash_source")
    assert "_zencache_completion()" in source.stdout


BOXED_SCRIPT = """
import json
import os

from zencache import pipeline, step
from zencache.materializers.base_materializer import BaseMaterializer


class Box:
    def __init__(self, value):
        self.value = value


class BoxMaterializer(BaseMaterializer):
    ASSOCIATED_TYPES = (Box,)

    def save(self, data):
        with open(os.path.join(self.uri, "box.json"), "w") as f:
            json.dump(data.value, f)

    def load(self, data_type):
        with open(os.path.join(self.uri, "box.json")) as f:
            return Box(json.load(f))


@step
def make(n: int = 2) -> Box:
    return Box(list(range(n)))


@step
def unbox(box: Box) -> int:
    return sum(box.value)


@pipeline
def boxed(n: int = 2):
    return unbox(box=make(n=n))


if __name__ == "__main__":
    print(boxed().run().output())
"""


def test_a_script_and_the_cli_share_entries_with_a_script_defined_materializer(
    project: Path,
) -> None:
    (project / "boxflow.py").write_text(BOXED_SCRIPT)
    done = subprocess.run(
        [sys.executable, "boxflow.py"],
        cwd=project,
        capture_output=True,
        text=True,
        env=env(),
        timeout=120,
    )
    assert done.returncode == 0 and done.stdout.strip() == "1", done.stderr
    statuses = json.loads(ok(cli(project, "cache", "status", "boxflow.py:boxed", "--json")))
    assert [(s["step"], s["status"]) for s in statuses] == [("make", "cached"), ("unbox", "cached")]
    run = json.loads(ok(cli(project, "run", "boxflow.py:boxed", "--json")))
    assert [s["status"] for s in run["steps"]] == ["cached", "cached"]
    show = json.loads(ok(cli(project, "runs", "show", "latest", "--json")))
    assert "boxflow:BoxMaterializer@1" in json.dumps(show)
    assert "__main__" not in json.dumps(show)
