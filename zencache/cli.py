"""The `zencache` command. The only module that prints and maps errors to exit codes.

Imports the user's code and heavy libraries only inside the commands that need
them, so that `zencache --help` starts fast.
"""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zencache")
def main() -> None:
    """zencache: a caching pipeline runner that never computes the same thing twice."""
