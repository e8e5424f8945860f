"""Workers without the driver's file system: they read inputs from the remote and write
outputs to it through read-through caches of their own; a Dask LocalCluster whose
workers keep no file in the driver's cache folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from zencache import Cache

from .pipelines import chain


def files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.mark.parametrize("executor", ["processes", "dask"])
def test_workers_share_only_the_remote(tmp_path: Path, remote_url: str, monkeypatch, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    worker_cache = tmp_path / "worker-cache"
    monkeypatch.setenv("ZENCACHE_WORKER_CACHE", str(worker_cache))
    driver = Cache(tmp_path / "driver")
    run = chain(n=120_000, scale=0.5).run(
        executor=executor, max_workers=2, cache=driver, remote=remote_url
    )
    assert {s.status for s in run.steps.values()} == {"executed"}
    # The workers wrote the array to their own cache and to the remote, never here.
    assert files(worker_cache / "objects")
    assert files(driver.path / "objects") == []
    expected = np.arange(120_000, dtype=np.float64)
    assert run.output() == f"total={float(expected.sum()) * 0.5}"
    np.testing.assert_array_equal(run.steps["make"].output(), expected)  # fetched from the remote
    assert files(driver.path / "objects")
    # Another machine hits everything the workers computed.
    laptop = Cache(tmp_path / "laptop")
    again = chain(n=120_000, scale=0.5).run(cache=laptop, remote=remote_url)
    assert {s.source for s in again.steps.values()} == {"remote"}
    np.testing.assert_array_equal(again.steps["make"].output(), expected)
    driver.close()
    laptop.close()
