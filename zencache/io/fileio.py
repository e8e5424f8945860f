"""ZenML's `fileio` names over the local file system, so that the seed's materializers run.

zencache keeps artifacts in its own content-addressed store; a materializer only
ever sees a local folder (`self.uri`), so these are thin wrappers over the
standard library. A leaf: imports nothing of ours.
"""

from __future__ import annotations

import builtins
import glob as _glob
import os
import shutil
from collections.abc import Iterator
from typing import IO, Any

PathType = str | os.PathLike[str]


def open(path: PathType, mode: str = "r", *args: Any, **kwargs: Any) -> IO[Any]:
    """builtins.open under ZenML's name (`fileio.open(path, "wb")`)."""
    return builtins.open(path, mode, *args, **kwargs)


def exists(path: PathType) -> bool:
    return os.path.exists(path)


def isdir(path: PathType) -> bool:
    return os.path.isdir(path)


def listdir(path: PathType) -> list[str]:
    """The names in a folder, sorted so that what a materializer writes is deterministic."""
    return sorted(os.listdir(path))


def makedirs(path: PathType) -> None:
    """Create a folder and its parents; an existing folder is fine."""
    os.makedirs(path, exist_ok=True)


def mkdir(path: PathType) -> None:
    os.mkdir(path)


def remove(path: PathType) -> None:
    os.remove(path)


def rmtree(path: PathType) -> None:
    shutil.rmtree(path)


def rename(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    if not overwrite and os.path.exists(dst):
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    os.replace(src, dst)


def copy(src: PathType, dst: PathType, overwrite: bool = False) -> None:
    if not overwrite and os.path.exists(dst):
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it")
    shutil.copyfile(src, dst)


def glob(pattern: PathType) -> list[str]:
    return sorted(_glob.glob(os.fspath(pattern)))


def size(path: PathType) -> int:
    return os.path.getsize(path)


def walk(top: PathType) -> Iterator[tuple[str, list[str], list[str]]]:
    return os.walk(os.fspath(top))
