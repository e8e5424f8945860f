"""The click group, global options and the one place errors become exit codes.

Exit status: 0 ok, 1 a check failed (or a step failed), 2 usage or input error.
A ZencacheError prints its one-line message to stderr; anything else is a bug
and says so. `--debug` shows the traceback in both cases.
"""

from __future__ import annotations

import logging
import sys
import traceback
import warnings
from typing import Any

import click

from .. import __version__
from ..errors import ZencacheError


class ZencacheGroup(click.Group):
    """Maps exceptions to exit codes, so no command prints a bare traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ZencacheError as exc:
            _report(ctx, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            ctx.exit(exc.exit_code)
        except click.UsageError as exc:
            # click's own three-line usage message, folded into our one-line shape
            where = exc.ctx.command_path if exc.ctx else "zencache"
            _report(ctx, f"{exc.format_message()} (see '{where} --help')")
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted; what finished is cached", err=True)
            ctx.exit(130)
        except Exception as exc:
            _report(
                ctx,
                f"internal error: {type(exc).__name__}: {exc} (rerun with --debug and report it)",
            )
            ctx.exit(1)


def _show_warning(
    message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any
) -> None:
    """A warning is one line on stderr (the library warns; the CLI shows it)."""
    click.echo(f"warning: {str(message).splitlines()[0]}", err=True)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None:
        root = ctx.find_root()
        root.ensure_object(dict)
        root.obj[param.name] = value
    return value


def remote_options(fn: Any) -> Any:
    """`--remote URL` and `--remote-mode`, accepted before or after the command name."""
    fn = click.option(
        "--remote-mode",
        "remote_mode",
        type=click.Choice(["read-write", "read-only", "off"]),
        default=None,
        expose_value=False,
        callback=_remember,
        is_eager=True,
        help="Use of the remote: read-write (CI), read-only (laptops), off "
        "(default: $ZENCACHE_REMOTE_MODE, pyproject.toml, read-write).",
    )(fn)
    return click.option(
        "--remote",
        "remote",
        metavar="URL",
        default=None,
        expose_value=False,
        callback=_remember,
        is_eager=True,
        help="A shared remote cache: s3://bucket/prefix, gs://, az://, http(s)://, file:///path "
        "(default: $ZENCACHE_REMOTE, or remote in pyproject.toml).",
    )(fn)


def _report(ctx: click.Context, message: str) -> None:
    if ctx.find_root().params.get("debug"):
        traceback.print_exc()
    click.echo(f"error: {message}", err=True)


@click.group(cls=ZencacheGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="zencache")
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False),
    envvar="ZENCACHE_DIR",
    help="The cache directory (default: ./.zencache, or $ZENCACHE_DIR).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@remote_options
@click.pass_context
def main(ctx: click.Context, cache_dir: str | None, debug: bool) -> None:
    """zencache: a caching pipeline runner that never computes the same thing twice."""
    ctx.ensure_object(dict)
    ctx.obj["cache_dir"] = cache_dir
    warnings.showwarning = _show_warning  # this process is the CLI's
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cache_from(ctx: click.Context) -> Any:
    """The Cache named by --cache-dir / ZENCACHE_DIR / the default, for a command."""
    from ..storage.cache import Cache

    obj = ctx.find_root().obj
    return Cache(obj.get("cache_dir"), remote=obj.get("remote"), remote_mode=obj.get("remote_mode"))


@main.group("cache")
def cache_group() -> None:
    """Inspect and manage the cache: status, ls, stats, gc, verify, clear."""


@main.group("runs")
def runs_group() -> None:
    """Recorded runs: ls, show."""
