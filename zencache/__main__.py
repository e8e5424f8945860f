"""`python -m zencache`: the same command line as the `zencache` script."""

from __future__ import annotations

from .cli import main

if __name__ == "__main__":
    main(prog_name="zencache")
