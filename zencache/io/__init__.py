"""File access for materializers: `from zencache.io import fileio`, as in ZenML.

A leaf: imports nothing of ours. Materializers use it to write under `self.uri`.
"""

from . import fileio

__all__ = ["fileio"]
