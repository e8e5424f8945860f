"""`zencache.File` and `zencache.Dir`: a plain string that names a file or a folder.

A `pathlib.Path` parameter is already tracked by content. A step whose code
wants a `str` (an API that takes strings, a path built by formatting) marks it
with these: either as the value, `load(path=File("data/train.csv"))`, or as the
annotation, `def load(path: File)`. Both are `str` subclasses, so the step
receives a string it can open, join or pass to pandas. A leaf: imports nothing.
"""

from __future__ import annotations


class File(str):
    """A string naming a file: the step's key follows the file's bytes."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"File({str.__repr__(self)})"


class Dir(str):
    """A string naming a folder: the step's key follows every file in it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Dir({str.__repr__(self)})"
