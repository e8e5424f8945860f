"""The `zencache` command line. Commands live in one module per group of nouns."""

from __future__ import annotations

from . import (  # noqa: F401  (register commands)
    audit_commands,
    cache_commands,
    config_commands,
    pipeline_commands,
    remote_commands,
    results_commands,
    runs_commands,
    size_commands,
)
from .app import main

__all__ = ["main"]
