"""`zencache init` and `zencache config`: the project's cache and its effective settings.

Formatting only: discovery and precedence live in zencache.config.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..config import SPECS, Settings
from .app import main, settings_from
from .cache_commands import echo_json, format_table

_SOURCES = {
    "default": "default",
    "found": "found (the nearest .zencache up from here)",
    "option": "option (--cache-dir)",
}


@main.command("init", short_help="Create the project's cache (idempotent).")
@click.argument(
    "directory", required=False, type=click.Path(file_okay=False, path_type=Path), default=None
)
@click.pass_context
def init_command(ctx: click.Context, directory: Path | None) -> None:
    """Create the cache where this project's commands will find it, and say where.

    Without DIRECTORY: the folder `zencache config` names (--cache-dir,
    $ZENCACHE_DIR, cache_dir under [tool.zencache], the nearest .zencache up the
    tree, else .zencache beside the nearest pyproject.toml or .git, else here).
    With DIRECTORY: DIRECTORY/.zencache. Running it again changes nothing.

    \b
    Example:
      zencache init            # from anywhere inside the project
    """
    from ..config import CACHE_DIRNAME
    from ..storage.cache import Cache

    if directory is not None:
        if ctx.find_root().obj.get("cache_dir"):
            raise click.UsageError("give either DIRECTORY or --cache-dir, not both")
        path, source = (directory / CACHE_DIRNAME).absolute(), "DIRECTORY"
    else:
        settings = settings_from(ctx)
        path, source = settings.cache_dir, _source(settings, "cache_dir")
    cache = Cache(path)
    existed = cache.exists()
    try:
        cache.index  # noqa: B018  (opening the index creates the layout and the index)
    finally:
        cache.close()
    if existed:
        click.echo(f"cache already initialized in {path} (unchanged)")
    else:
        click.echo(f"initialized an empty cache in {path}")
    if source not in ("default", "DIRECTORY", _SOURCES["found"]):
        click.echo(f"  (location from {source})", err=True)


@main.command("config", short_help="Show the effective settings and where each came from.")
@click.argument("name", required=False, type=click.Choice(list(SPECS)), metavar="[NAME]")
@click.option("--json", "as_json", is_flag=True, help="Print {name: {value, source}} as JSON.")
@click.pass_context
def config_command(ctx: click.Context, name: str | None, as_json: bool) -> None:
    """Show each setting's effective value and where it came from.

    Precedence, lowest first: defaults, [tool.zencache] in the nearest
    pyproject.toml, ZENCACHE_* environment variables, options. NAME prints one
    value alone (for scripts: `cd "$(zencache config cache_dir)"`).

    \b
    Examples:
      zencache config
      zencache config --json
      zencache config cache_dir
    """
    settings = settings_from(ctx)
    if name is not None and not as_json:
        value = settings.entries[name].value
        click.echo("" if value is None else _text(value))  # unset: an empty line, for scripts
        return
    if as_json:
        names = [name] if name is not None else list(SPECS)
        echo_json(
            {
                "project": {
                    "root": _json(settings.project.root),
                    "pyproject": _json(settings.project.pyproject),
                },
                "settings": {
                    n: {
                        "value": _json(settings.entries[n].value),
                        "source": settings.entries[n].source,
                        "env": SPECS[n].env,
                    }
                    for n in names
                },
            }
        )
        return
    rows = [(n, _text(settings.entries[n].value), _source(settings, n)) for n in SPECS]
    click.echo(format_table(("SETTING", "VALUE", "SOURCE"), rows))
    project = settings.project
    where = f"project root {project.root}" if project.root else "no project marker found"
    settings_file = f"; settings read from {project.pyproject}" if project.pyproject else ""
    click.echo(f"({where}{settings_file})", err=True)


def _source(settings: Settings, name: str) -> str:
    source = settings.source(name)
    if source in _SOURCES:
        return _SOURCES[source]
    if source.startswith("ZENCACHE_"):
        return f"environment ({source})"
    return f"{source} [tool.zencache]"


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value)) or "-"
    return str(value)


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value
