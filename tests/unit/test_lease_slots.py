"""Leases as kernel locks on slots of one file: real files, real processes, real kills."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from zencache import Cache
from zencache.executors import leases
from zencache.storage import lease_slots
from zencache.storage.lease_slots import LeaseSlots, slot
from zencache.storage.records import StepRecord

A, B = "ab" * 16, "cd" * 16

_HOLD = """
import sys, time
from zencache.storage.lease_slots import LeaseSlots
slots = LeaseSlots(sys.argv[1])
assert slots.take(sys.argv[2])
print("held", flush=True)
time.sleep(60)
"""


def _entry(key: str, output_id: str) -> StepRecord:
    """A step entry of one output, as a holder commits it."""
    return StepRecord(
        key=key,
        step="m:f",
        name="f",
        pipeline="p",
        output_ids=(output_id,),
        output_names=("output",),
        fingerprint="f" * 32,
        code_parts={},
        params={},
        inputs={},
        materializers={"output": "zencache.builtin@1"},
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "leases"


def test_a_lease_excludes_every_other_handle_until_released(folder: Path) -> None:
    holder, other, looker = LeaseSlots(folder), LeaseSlots(folder), LeaseSlots(folder)
    try:
        assert holder.take(A)
        assert not other.take(A)  # another run of this process: excluded too
        assert not holder.take(A)  # and the holder itself cannot take it twice
        assert other.take(B)
        assert looker.held(A) and looker.held(B)
        assert looker.held_slots() == sorted([slot(A), slot(B)])
        holder.release(A)
        assert not looker.held(A)
        assert other.take(A)
        other.close()  # closing drops every lease taken through it
        assert looker.held_slots() == []
        assert (folder / lease_slots.FILENAME).stat().st_size == 0  # nothing is written
    finally:
        for handle in (holder, other, looker):
            handle.close()


def test_two_keys_sharing_a_slot_exclude_each_other_and_release_only_their_own(
    folder: Path,
) -> None:
    twin = f"{int(A[:8], 16) + lease_slots.SLOTS:08x}"[-8:] + A[8:]
    assert twin != A and slot(twin) == slot(A)
    holder, other, looker = LeaseSlots(folder), LeaseSlots(folder), LeaseSlots(folder)
    try:
        assert holder.take(A)
        assert not holder.take(twin) and not other.take(twin)
        holder.release(twin)  # not what it holds: nothing happens
        assert looker.held(A)
        holder.release(A)
        assert other.take(twin)
    finally:
        for handle in (holder, other, looker):
            handle.close()


def test_keys_that_are_not_digests_get_a_slot(folder: Path) -> None:
    slots = LeaseSlots(folder)
    try:
        assert 0 <= slot("not a digest") < lease_slots.SLOTS
        assert slots.take("not a digest")
    finally:
        slots.close()


@pytest.mark.parametrize("reap", [True, False], ids=["reaped", "zombie"])
def test_the_kernel_frees_a_killed_holders_lease(folder: Path, reap: bool) -> None:
    """No pid, start time or expiry is checked: a process killed with SIGKILL holds
    nothing, whether its parent reaped it or it is still a zombie."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(folder), A], stdout=subprocess.PIPE, text=True
    )
    waiter = LeaseSlots(folder)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        assert waiter.held(A) and not waiter.take(A)  # another process holds it
        os.kill(proc.pid, signal.SIGKILL)
        if reap:
            proc.wait()
        deadline = time.monotonic() + 10
        while not waiter.take(A):
            assert time.monotonic() < deadline, "the dead holder's lease was never freed"
            time.sleep(0.001)
        if not reap:
            with open(f"/proc/{proc.pid}/stat") as fh:
                assert fh.read().rsplit(")", 1)[1].split()[0] == "Z"  # still a zombie
    finally:
        waiter.close()
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_waiter_calls_back_while_it_polls_and_takes_the_holders_entry(tmp_path: Path) -> None:
    """The runner passes its committer's check as the callback: a driver waiting on
    another holder's lease still learns at once that a commit of its own failed."""
    cache = Cache(tmp_path / "cache")
    holder = leases.Leases(cache, "holder")
    try:
        key = "e" * 32
        assert holder.attempt(key, looked_up=True) is None  # another run holds it
        record = _entry(key, "1" * 32)
        calls: list[int] = []

        def while_waiting() -> None:
            calls.append(1)
            if len(calls) == 3:  # the holder commits its entry meanwhile
                cache.index.write([("steps", key.encode(), record.encode())])

        ids = leases.Leases(cache, "run").acquire(key, while_waiting=while_waiting)
        assert ids == ("1" * 32,)
        assert len(calls) == 3
        assert cache.leases.held(key)  # the holder releases its own lease
        holder.close()
        assert not cache.leases.held(key)
    finally:
        holder.close()
        cache.close()


def test_a_run_that_takes_a_lease_and_finds_the_entry_gives_it_back(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    run = leases.Leases(cache, "run")
    try:
        key = "d" * 32
        record = _entry(key, "2" * 32)
        cache.index.write([("steps", key.encode(), record.encode())])
        # The caller missed just before the entry was committed: a hit after all.
        assert run.attempt(key, looked_up=True) == ("2" * 32,)
        assert not cache.leases.held(key) and run.held == set()
    finally:
        run.close()
        cache.close()
