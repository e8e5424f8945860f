"""The `zencache` command line. Commands live in one module per group of nouns."""

from __future__ import annotations

from . import cache_commands, pipeline_commands, runs_commands  # noqa: F401  (register commands)
from .app import main

__all__ = ["main"]
