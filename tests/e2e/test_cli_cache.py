"""The cache, runs and lineage commands in subprocesses, through the console script:
exit codes (0 ok, 1 damage found, 2 usage), --json that parses, one-line errors
without tracebacks, and the verify -> repair -> rerun cycle across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

ZENCACHE = Path(sys.executable).parent / "zencache"

PIPELINE = textwrap.dedent(
    """
    import json
    import sys

    import numpy as np

    from zencache import pipeline, step


    @step
    def source(n: int = 2000, seed: int = 0) -> np.ndarray:
        return np.arange(n, dtype=np.float64) + seed


    @step
    def double(x: np.ndarray) -> np.ndarray:
        return x * 2


    @step
    def total(x: np.ndarray) -> float:
        return float(x.sum())


    @pipeline
    def chain(seed: int = 0):
        return total(x=double(x=source(seed=seed)))


    if __name__ == "__main__":
        run = chain(seed=int(sys.argv[2])).run(cache=sys.argv[1])
        print(json.dumps({name: s.status for name, s in run.steps.items()}))
    """
)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ZENCACHE_DIR"}
    env["PYTHONWARNINGS"] = "error"
    return env


def zc(cache: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI, with stdin that is not a terminal."""
    return subprocess.run(
        [str(ZENCACHE), "--cache-dir", str(cache), *args],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        env=_env(),
        timeout=60,
        check=False,
    )


def ok(cache: Path, *args: str) -> str:
    done = zc(cache, *args)
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def ok_json(cache: Path, *args: str) -> Any:
    return json.loads(ok(cache, *args, "--json"))


def fails(cache: Path, code: int, *args: str) -> str:
    """Runs a command that must fail with `code` and a one-line error; returns it."""
    done = zc(cache, *args)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "chain.py"
    path.write_text(PIPELINE)
    return path


def run_pipeline(script: Path, cache: Path, seed: int = 0) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, str(script), str(cache), str(seed)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def cache(tmp_path: Path, script: Path) -> Path:
    """A cache holding one run of the chain (seed 0)."""
    path = tmp_path / "cache"
    assert run_pipeline(script, path) == {
        "source": "executed",
        "double": "executed",
        "total": "executed",
    }
    return path


# --- missing cache -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ("cache", "ls"),
        ("cache", "stats"),
        ("cache", "verify"),
        ("cache", "gc"),
        ("runs", "ls"),
        ("runs", "show", "latest"),
        ("lineage", "latest:total"),
    ],
)
def test_commands_on_a_missing_cache_exit_2_and_create_nothing(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    missing = tmp_path / "nothing"
    line = fails(missing, 2, *args)
    assert f"no cache at {missing}; run a pipeline first or pass --cache-dir" in line
    assert not missing.exists()


# --- listings --------------------------------------------------------------------------------


def test_listings_in_text_and_json(cache: Path) -> None:
    table = ok(cache, "cache", "ls").splitlines()
    assert table[0].split() == [
        "STEP",
        "PIPELINE",
        "KEY",
        "OUTPUTS",
        "SIZE",
        "CREATED",
        "LAST",
        "USED",
    ]
    assert sorted(line.split()[0] for line in table[1:]) == ["double", "source", "total"]
    entries = ok_json(cache, "cache", "ls")
    assert {e["name"] for e in entries} == {"source", "double", "total"}
    assert [e["name"] for e in ok_json(cache, "cache", "ls", "--step", "double")] == ["double"]

    stats = ok_json(cache, "cache", "stats")
    assert (stats["step_entries"], stats["runs"], stats["objects"]) == (3, 1, 2)
    assert stats["stored_bytes"] == stats["referenced_object_bytes"] + stats["inline_bytes"]
    assert "dedupe ratio" in ok(cache, "cache", "stats")

    runs = ok_json(cache, "runs", "ls")
    assert len(runs) == 1 and runs[0]["pipeline"] == "chain"
    assert runs[0]["steps"] == {"source": "executed", "double": "executed", "total": "executed"}
    assert runs[0]["run_id"] in ok(cache, "runs", "ls")

    record = ok_json(cache, "runs", "show", "latest")
    assert record["run_id"] == runs[0]["run_id"] and record["params"] == {"seed": "0"}
    assert record["environment"]["python"] and record["environment"]["distributions"]
    source = record["steps"][0]
    assert source["name"] == "source" and source["entry"]["params"]["seed"]["repr"] == "0"
    assert source["entry"]["fingerprint"] and source["entry"]["code_parts"]
    assert source["entry"]["outputs"] == source["outputs"]
    assert record["steps"][1]["entry"]["inputs"] == {"x": source["outputs"]["output"]}
    text = ok(cache, "runs", "show", runs[0]["run_id"][-6:])
    assert "environment" in text and "STEP" in text and "executed" in text

    tree = ok_json(cache, "lineage", "latest:total")
    double = tree["root"]["inputs"][0]["producer"]
    assert double["name"] == "double"
    assert double["inputs"][0]["producer"]["name"] == "source"
    assert double["inputs"][0]["producer"]["params"] == {"n": "2000", "seed": "0"}
    text = ok(cache, "lineage", source["outputs"]["output"][:10])
    assert "source" in text and "params: n=2000, seed=0" in text


def test_usage_errors_exit_2_with_one_line(cache: Path) -> None:
    assert "at least 8 hex digits" in fails(cache, 2, "lineage", "abc")
    assert "no artifact" in fails(cache, 2, "lineage", "0123456789abcdef")
    assert "has no step 'nope'" in fails(cache, 2, "lineage", "latest:nope")
    assert "no run matches 'zzz'" in fails(cache, 2, "runs", "show", "zzz")
    assert "invalid duration '7x'" in fails(cache, 2, "cache", "gc", "--older-than", "7x")
    done = zc(cache, "cache", "gc", "--keep-last", "-1")  # click's own parameter check
    assert done.returncode == 2 and "Traceback" not in done.stderr


# --- verify and repair -----------------------------------------------------------------------


def _flip(path: Path, offset: int = 5) -> None:
    os.chmod(path, 0o644)  # objects are written read-only
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_verify_exits_1_on_damage_and_repair_makes_the_next_run_reexecute(
    cache: Path, script: Path
) -> None:
    assert "no damage found" in ok(cache, "cache", "verify")
    (source,) = ok_json(cache, "cache", "ls", "--step", "source")
    target = _object_of(cache, "double")
    _flip(cache / "objects" / target[:2] / target[2:])

    line = fails(cache, 1, "cache", "verify")
    assert target in line and "--repair" in line
    done = zc(cache, "cache", "verify")
    assert f"corrupt object {target}" in done.stdout and "double" in done.stdout
    done = zc(cache, "cache", "verify", "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    assert report["damaged"] and not report["ok"]
    assert [o["object_id"] for o in report["objects"]] == [target]
    assert [s["entry"]["name"] for s in report["steps"]] == ["double"]

    repaired = ok(cache, "cache", "verify", "--repair")
    assert "repaired: dropped 1 artifact record and 1 step entry" in repaired
    assert "the next run re-executes: double" in repaired
    assert "no damage found" in ok(cache, "cache", "verify")
    assert run_pipeline(script, cache) == {
        "source": "cached",
        "double": "executed",
        "total": "cached",
    }
    assert ok_json(cache, "cache", "verify")["objects_checked"] == 2
    assert source["key"] in {e["key"] for e in ok_json(cache, "cache", "ls")}


def _object_of(cache: Path, step_name: str) -> str:
    """The single object holding a step's output, read from the index in-process."""
    from zencache import Cache

    handle = Cache(cache)
    try:
        (entry,) = [r for r in handle.index.iter_steps() if r.name == step_name]
        record = handle.index.get_artifact(entry.output_ids[0])
        assert record is not None
        (object_id,) = record.object_ids()
    finally:
        handle.close()
    return object_id


# --- gc and clear ------------------------------------------------------------------------------


def test_gc_deletes_old_unreferenced_objects_and_prunes_old_runs(cache: Path, script: Path) -> None:
    garbage = cache / "objects" / "ff" / ("0" * 30)
    garbage.parent.mkdir(exist_ok=True)
    garbage.write_bytes(b"not referenced by anything")
    old = time.time() - 86400
    os.utime(garbage, (old, old))

    report = ok_json(cache, "cache", "gc", "--dry-run")
    assert report["dry_run"] and report["objects"] == 1 and garbage.exists()
    assert "deleted 1 object" in ok(cache, "cache", "gc")
    assert not garbage.exists()

    assert run_pipeline(script, cache, seed=1)["source"] == "executed"
    report = ok_json(cache, "cache", "gc", "--keep-last", "1", "--grace", "0")
    assert len(report["runs"]) == 1 and report["kept_runs"] == 1
    assert {s["name"] for s in report["steps"]} == {"source", "double", "total"}
    assert report["objects"] == 2 and ok_json(cache, "cache", "stats")["objects"] == 2
    assert "no damage found" in ok(cache, "cache", "verify")
    assert set(run_pipeline(script, cache, seed=1).values()) == {"cached"}


def test_clear_asks_for_yes_without_a_terminal(cache: Path, script: Path) -> None:
    line = fails(cache, 2, "cache", "clear")
    assert "without confirmation" in line and "--yes" in line
    assert ok_json(cache, "cache", "stats")["step_entries"] == 3  # nothing removed

    assert "removed 1 step entry of 'double'" in ok(cache, "cache", "clear", "double", "--yes")
    assert "no step entries match 'double'" in fails(cache, 2, "cache", "clear", "double", "--yes")
    assert run_pipeline(script, cache) == {
        "source": "cached",
        "double": "executed",
        "total": "cached",
    }
    assert "removed 3 step entries" in ok(cache, "cache", "clear", "--yes")
    stats = ok_json(cache, "cache", "stats")
    assert (stats["step_entries"], stats["runs"], stats["objects"]) == (0, 0, 0)
