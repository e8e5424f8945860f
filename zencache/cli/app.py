"""The click group, global options and the one place errors become exit codes.

Exit status: 0 ok, 1 a check failed (or a step failed), 2 usage or input error,
141 when the reader of stdout went away (`| head -1`), silently, as git does.
A ZencacheError prints its one-line message to stderr; anything else is a bug
and says so. `--debug` shows the traceback in both cases. The global options
may also follow the command (`zencache cache stats --cache-dir X`).
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
from . import output

# The root's options, accepted before or after the command: (name, takes a value).
_GLOBAL_OPTIONS = {"--cache-dir": True, "--debug": False}
SIGPIPE_EXIT = 141  # 128 + SIGPIPE: what a shell reports for `git log | head -1`


def hoist_global_options(args: list[str]) -> list[str]:
    """`cache stats --cache-dir X` -> `--cache-dir X cache stats`; stops at `--`."""
    hoisted: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        name = arg.partition("=")[0]
        if name in _GLOBAL_OPTIONS:
            takes_value = _GLOBAL_OPTIONS[name]
            if takes_value and "=" not in arg and i + 1 < len(args):
                hoisted += args[i : i + 2]
                i += 2
                continue
            hoisted.append(arg)
        else:
            rest.append(arg)
        i += 1
    return hoisted + rest


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


class ZencacheGroup(click.Group):
    """Maps exceptions to exit codes, so no command prints a bare traceback."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(list(args))
            ctx.meta["zencache.json"] = _wants_json(args)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            if ctx.meta.get("zencache.json"):
                with output.stdout_for_data_only():
                    return super().invoke(ctx)
            return super().invoke(ctx)
        except BrokenPipeError:
            output.silence_stdout()
            ctx.exit(SIGPIPE_EXIT)
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
    help="The cache directory (default: $ZENCACHE_DIR, cache_dir in [tool.zencache], "
    "the nearest .zencache up the tree, else .zencache beside pyproject.toml or .git).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logging.")
@remote_options
@click.pass_context
def main(ctx: click.Context, cache_dir: str | None, debug: bool) -> None:
    """zencache: a caching pipeline runner that never computes the same thing twice.

    The global options may come before or after the command. Shell completion:
    eval "$(_ZENCACHE_COMPLETE=bash_source zencache)" (zsh_source, fish_source).
    """
    ctx.ensure_object(dict)
    ctx.obj["cache_dir"] = cache_dir
    warnings.showwarning = _show_warning  # this process is the CLI's
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def cache_from(ctx: click.Context) -> Any:
    """The Cache named by --cache-dir, else by the project's settings (zencache.config)."""
    from ..storage.cache import Cache

    obj = ctx.find_root().obj
    return Cache(obj.get("cache_dir"), remote=obj.get("remote"), remote_mode=obj.get("remote_mode"))


def settings_from(ctx: click.Context) -> Any:
    """The effective settings for this command, --cache-dir counted as an option."""
    from ..config import load_settings

    return load_settings(cache_dir=ctx.find_root().obj.get("cache_dir"))


@main.group("cache")
def cache_group() -> None:
    """Inspect and manage the cache: status, ls, stats, gc, verify, clear."""


@main.group("runs")
def runs_group() -> None:
    """Recorded runs: ls, show, diff, rm."""
