"""Where the CLI's output goes: data on stdout, diagnostics on stderr, colours by convention.

Owns three things every command shares: whether to colour (FORCE_COLOR, then NO_COLOR,
then whether the stream is a terminal: https://no-color.org, https://force-color.org),
keeping stdout pure data while `--json` is written (everything else, the user's prints
at import included, goes to stderr, at the file-descriptor level so that C extensions
and child processes follow), and the stream that `data()` writes to. Imports click only.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import IO, Any

import click

_STATUS_COLORS = {
    "cached": "green",
    "executed": "cyan",
    "stale": "yellow",
    "new": "blue",
    "failed": "red",
    "skipped": "magenta",
    "interrupted": "red",
    "completed": "green",
}

# The real stdout while `--json` keeps it for data (None: sys.stdout is the real one).
_data_stream: IO[str] | None = None


def color_enabled(stream: Any = None) -> bool:
    """FORCE_COLOR (non-empty, not 0) wins, then NO_COLOR (non-empty), then a terminal."""
    forced = os.environ.get("FORCE_COLOR")
    if forced is not None and forced not in ("", "0", "false"):
        return True
    if os.environ.get("NO_COLOR"):
        return False
    stream = sys.stdout if stream is None else stream
    if os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def paint(text: str, status: str, enabled: bool) -> str:
    """`text` coloured for a status (cached, stale, ...) when colours are on."""
    color = _STATUS_COLORS.get(status)
    return click.style(text, fg=color) if enabled and color else text


def echo(text: str = "", *, err: bool = False, nl: bool = True, colored: bool = False) -> None:
    """click.echo to the data stream (or stderr); `colored` lines keep their ANSI codes."""
    stream = sys.stderr if err else (_data_stream or sys.stdout)
    click.echo(text, file=stream, nl=nl, color=True if colored else None)


def data(text: str) -> None:
    """One piece of data (a JSON document, a table) on the real stdout."""
    click.echo(text, file=_data_stream or sys.stdout)


@contextlib.contextmanager
def stdout_for_data_only() -> Iterator[None]:
    """While it lasts, whatever writes to stdout lands on stderr except `data()`.

    The user's module may print when imported and its steps when they run; with
    `--json` that would corrupt the document a script parses, so file descriptor 1
    itself is pointed at stderr and the data goes to a duplicate of the original.
    """
    global _data_stream
    try:
        fd = sys.stdout.fileno()
        err_fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        fd = err_fd = -1
    real = sys.stdout
    if fd < 0:  # not a real file (click's CliRunner): swap the Python object only
        _data_stream, sys.stdout = real, sys.stderr
        try:
            yield
        finally:
            sys.stdout, _data_stream = real, None
        return
    real.flush()
    saved = os.dup(fd)
    os.dup2(err_fd, fd)
    _data_stream = os.fdopen(saved, "w", encoding="utf-8", errors="replace", closefd=True)
    try:
        yield
    finally:
        try:
            real.flush()  # the user's buffered prints: to stderr still
        finally:
            stream, _data_stream = _data_stream, None
            try:
                stream.flush()
            finally:
                os.dup2(saved, fd)
                stream.close()


def silence_stdout() -> None:
    """After the reader went away (`| head -1`): nothing more to write, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
