"""The W&B hook in W&B's offline mode, its run files read back: a pipeline run twice
gives two W&B runs whose step sections hold the same metrics, the second marked
cached. The files are read as W&B writes them (a LevelDB-style log of protobuf
records, wandb.proto's Record), with no network."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wandb")

from wandb.proto import wandb_internal_pb2

import zencache
from zencache import Cache, pipeline, step
from zencache.integrations.wandb import WandbHook

_BLOCK = 32 * 1024
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def read_records(path: Path) -> list[Any]:
    """The protobuf records of a .wandb file: a 7-byte header (':W&B', magic, version),
    then 32 KiB blocks of chunks, each with a 7-byte header (crc32c, length, type)."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(data):
        left = _BLOCK - pos % _BLOCK
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0 and length == 0:
            pos += left
            continue
        if pos + 7 + length > len(data):
            break  # a chunk still being written
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == _FULL:
            payload = chunk
        elif kind == _FIRST:
            pending = chunk
            continue
        elif kind == _MIDDLE:
            pending += chunk
            continue
        else:
            assert kind == _LAST
            payload, pending = pending + chunk, b""
        record = wandb_internal_pb2.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


class OfflineRun:
    """What one offline run wrote: run name, config, history rows and final summary."""

    def __init__(self, path: Path) -> None:
        self.name = ""
        self.config: dict[str, Any] = {}
        self.history: list[dict[str, Any]] = []
        self.summary: dict[str, Any] = {}
        self.exit_code: int | None = None
        for record in read_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                self.name = record.run.display_name
                self._config(record.run.config.update)
            elif kind == "config":
                self._config(record.config.update)
            elif kind == "history":
                self.history.append(
                    {_key(i): json.loads(i.value_json) for i in record.history.item}
                )
            elif kind == "summary":
                for item in record.summary.update:
                    self.summary[_key(item)] = json.loads(item.value_json)
            elif kind == "exit":
                self.exit_code = record.exit.exit_code

    def _config(self, updates: Any) -> None:
        for item in updates:
            self.config[_key(item)] = json.loads(item.value_json)

    def series(self, name: str) -> list[Any]:
        return [row[name] for row in self.history if name in row]


def _key(item: Any) -> str:
    return item.key or "/".join(item.nested_key)


@step
def prepare(n: int = 6) -> list:
    zencache.log_metadata(rows=n)
    return list(range(n))


@step
def learn(data: list, rate: float = 0.1) -> float:
    for epoch in range(3):
        zencache.log_metric("loss", 1.0 / (epoch + 1), step=epoch)
    zencache.log_metric("score", sum(data) * rate)
    return sum(data) * rate


@pipeline
def tiny(rate: float = 0.1):
    return learn(data=prepare(), rate=rate)


def offline_runs(folder: Path, count: int) -> dict[str, OfflineRun]:
    """The offline runs in `folder`, once W&B's service (which writes the files after
    run.finish() returns) has written each one's exit record."""
    deadline = time.monotonic() + 60
    while True:
        files = sorted(folder.glob("wandb/offline-run-*/run-*.wandb"))
        runs = [OfflineRun(f) for f in files]
        if len(runs) == count and all(r.exit_code is not None for r in runs):
            return {r.config["zencache"]["run_id"]: r for r in runs}
        assert time.monotonic() < deadline, f"W&B wrote {len(runs)} complete run files"
        time.sleep(0.2)


def test_two_runs_offline_show_the_same_metrics_the_second_cached(
    cache: Cache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    hook = WandbHook(project="zencache-test", mode="offline", dir=str(tmp_path))
    first = tiny().run(cache=cache, hooks=[hook])
    second = tiny().run(cache=cache, hooks=[hook])

    runs = offline_runs(tmp_path, 2)
    assert set(runs) == {first.run_id, second.run_id}
    a, b = runs[first.run_id], runs[second.run_id]
    assert a.name == f"tiny {first.run_id}"
    assert a.config["params"] == {"rate": "0.1"}
    assert a.config["steps"] == {"prepare": {"n": 6}, "learn": {"rate": 0.1}}
    assert a.summary["learn/zencache.status"] == "executed"
    assert b.summary["learn/zencache.status"] == "cached"
    assert b.summary["prepare/zencache.status"] == "cached"
    assert b.summary["learn/zencache.produced_by"] == first.run_id
    for run in (a, b):
        assert run.summary["learn/score"] == pytest.approx(1.5)
        assert run.summary["learn/loss"] == pytest.approx(1 / 3)
        assert run.series("learn/loss") == pytest.approx([1.0, 0.5, 1 / 3])
        assert run.series("learn/step") == [0, 1, 2]
        assert run.summary["prepare/zencache.metadata.rows"] == 6
        assert run.summary["learn/zencache.key"] == first.steps["learn"].key
        assert run.summary["learn/zencache.output.output"] == first.steps["learn"].outputs["output"]
        assert run.exit_code == 0
    assert b.summary["zencache.status"] == "completed"
    assert b.summary["zencache.steps.cached"] == 2
