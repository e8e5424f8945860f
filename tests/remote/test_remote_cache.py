"""Two local caches sharing one remote act as two machines: CI computes, the laptop
hits. Against file:// and a real S3 API server on 127.0.0.1 (moto)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from zencache import Cache
from zencache.storage.remote import open_remote
from zencache.storage.remote.client import load_stats

from .conftest import remote_paths
from .pipelines import chain


def object_files(cache: Cache) -> list[Path]:
    return [p for p in (cache.path / "objects").rglob("*") if p.is_file()]


def test_ci_computes_and_the_laptop_hits_without_moving_data(tmp_path: Path, remote_url: str):
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    run = chain(n=100_000).run(cache=ci, remote=remote_url)
    assert {s.status for s in run.steps.values()} == {"executed"}
    stored = remote_paths(remote_url)
    assert {p.split("/")[0] for p in stored} == {"ac", "cas", "pipelines", "runs"}
    assert sum(p.startswith("ac/") for p in stored) == 3

    hit = chain(n=100_000).run(cache=laptop, remote=remote_url)
    assert {s.status for s in hit.steps.values()} == {"cached"}
    assert {s.source for s in hit.steps.values()} == {"remote"}
    assert [s.key for s in hit.steps.values()] == [s.key for s in run.steps.values()]
    assert object_files(laptop) == []  # entries moved, data did not
    # Loading fetches the data, verified, into the local store.
    np.testing.assert_array_equal(hit.steps["make"].output(), np.arange(100_000, dtype=np.float64))
    assert hit.output() == f"total={float(np.arange(100_000).sum())}"
    assert object_files(laptop)

    again = chain(n=100_000).run(cache=laptop, remote=remote_url)
    assert {s.source for s in again.steps.values()} == {"local"}
    stats = load_stats(laptop.index)
    assert stats.hits == 3 and stats.bytes_down > 800_000 and stats.errors == 0
    ci.close()
    laptop.close()


def test_a_changed_step_reruns_there_and_only_it(tmp_path: Path, remote_url: str):
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    chain(n=50_000).run(cache=ci, remote=remote_url)
    run = chain(n=50_000, scale=2.0).run(cache=laptop, remote=remote_url)
    statuses = {name: (s.status, s.source) for name, s in run.steps.items()}
    assert statuses == {
        "make": ("cached", "remote"),
        "total": ("executed", ""),
        "label": ("executed", ""),
    }
    assert run.output() == f"total={float(np.arange(50_000).sum()) * 2.0}"
    # The laptop wrote back what it computed: CI now hits it.
    back = chain(n=50_000, scale=2.0).run(cache=ci, remote=remote_url)
    assert back.steps["total"].source == "remote"
    ci.close()
    laptop.close()


def test_read_only_uploads_nothing_and_still_reads(tmp_path: Path, remote_url: str):
    laptop, ci = Cache(tmp_path / "laptop"), Cache(tmp_path / "ci")
    chain(n=20_000).run(cache=laptop, remote=remote_url, remote_mode="read-only")
    assert remote_paths(remote_url) == []
    chain(n=30_000).run(cache=ci, remote=remote_url)
    run = chain(n=30_000).run(cache=laptop, remote=remote_url, remote_mode="read-only")
    assert {s.source for s in run.steps.values()} == {"remote"}
    assert run.output() == f"total={float(np.arange(30_000).sum())}"
    laptop.close()
    ci.close()


def test_mode_off_and_settings_from_the_environment(tmp_path: Path, file_remote: str, monkeypatch):
    monkeypatch.setenv("ZENCACHE_REMOTE", file_remote)
    a, b = Cache(tmp_path / "a"), Cache(tmp_path / "b")
    chain(n=10_000).run(cache=a, remote_mode="off")
    assert remote_paths(file_remote) == []
    chain(n=10_000).run(cache=a)  # cached locally: the remote is never opened
    assert remote_paths(file_remote) == []
    chain(n=11_000).run(cache=a)
    assert remote_paths(file_remote)
    run = chain(n=11_000).run(cache=b)
    assert {s.source for s in run.steps.values()} == {"remote"}
    assert open_remote(mode="off") is None
    a.close()
    b.close()


def test_verify_counts_unfetched_remote_objects_as_remote_not_missing(
    tmp_path: Path, remote_url: str
):
    from zencache import maintenance

    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop", remote=remote_url)
    chain(n=100_000).run(cache=ci, remote=remote_url)
    chain(n=100_000).run(cache=laptop)
    report = maintenance.verify(laptop)
    assert report.ok and not report.damaged
    assert report.remote_objects > 0
    offline = Cache(tmp_path / "laptop", remote_mode="off")
    assert {d.problem for d in maintenance.verify(offline).objects} == {"missing"}
    ci.close()
    laptop.close()


class _Ends:
    """A hook recording where each ended step came from."""

    def __init__(self) -> None:
        self.sources: dict[str, str | None] = {}

    def on_step_end(self, *, step: str, status: str, source: str | None) -> None:
        self.sources[step] = source


def test_hooks_hear_where_a_cached_step_came_from(tmp_path: Path, file_remote: str):
    ci, laptop = Cache(tmp_path / "ci"), Cache(tmp_path / "laptop")
    chain(n=10_000).run(cache=ci, remote=file_remote)
    first, again = _Ends(), _Ends()
    chain(n=10_000).run(cache=laptop, remote=file_remote, hooks=[first])
    chain(n=10_000).run(cache=laptop, remote=file_remote, hooks=[again])
    assert set(first.sources.values()) == {"remote"}
    assert set(again.sources.values()) == {"local"}
    ci.close()
    laptop.close()
