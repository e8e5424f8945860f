"""Shared fixtures: a fresh cache, object store and index on real files under tmp_path."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from zencache.storage.cache import Cache
from zencache.storage.index import Index
from zencache.storage.store import ObjectStore

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Cache]:
    """A Cache in an empty folder; its index is released at teardown."""
    cache = Cache(tmp_path / "cache")
    try:
        yield cache
    finally:
        cache.close()


@pytest.fixture
def store(tmp_path: Path) -> ObjectStore:
    """A bare object store (no index, no cache layout)."""
    return ObjectStore(tmp_path / "objects")


@pytest.fixture
def index(tmp_path: Path) -> Iterator[Index]:
    """A bare LMDB index, closed at teardown."""
    index = Index(tmp_path / "index.lmdb")
    try:
        yield index
    finally:
        index.close()


class FreshPython:
    """Runs code in fresh interpreters that import this checkout of zencache."""

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = {**os.environ, **(extra or {})}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p
        )
        return env

    def run(
        self, code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            capture_output=True,
            text=True,
            env=self.env(env),
            timeout=timeout,
            check=False,
        )

    def popen(
        self, code: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[str]:
        """Start without waiting (for tests of several processes at once)."""
        return subprocess.Popen(
            [sys.executable, "-c", code, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env(env),
        )


@pytest.fixture
def python() -> FreshPython:
    return FreshPython()


def _flip_byte(path: Path, offset: int = 0) -> None:
    os.chmod(path, 0o644)  # objects are written read-only
    with open(path, "r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


@pytest.fixture
def flip_byte() -> Callable[..., None]:
    """`flip_byte(path, offset=0)` corrupts a stored file in place."""
    return _flip_byte


class CountingEnv:
    """Stands in for an index's LMDB environment and counts its transactions."""

    def __init__(self, env: Any) -> None:
        self._env = env
        self.reads = 0
        self.writes = 0

    def begin(self, *args: Any, write: bool = False, **kwargs: Any) -> Any:
        if write:
            self.writes += 1
        else:
            self.reads += 1
        return self._env.begin(*args, write=write, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._env, name)


@contextlib.contextmanager
def _counting_transactions(index: Index) -> Iterator[CountingEnv]:
    counting = CountingEnv(index.env)
    index.env = counting
    try:
        yield counting
    finally:
        index.env = counting._env


@pytest.fixture
def count_transactions() -> Callable[[Index], contextlib.AbstractContextManager[CountingEnv]]:
    """`with count_transactions(cache.index) as counted:` counts read and write txns."""
    return _counting_transactions
