"""`zencache pin | unpin` and `zencache cache limit`: the size limit's controls.

Formatting only: the policy lives in zencache.maintenance.eviction.
"""

from __future__ import annotations

import click

from .app import cache_from, cache_group, main
from .cache_commands import echo_json, human_bytes, note, plural


@main.command("pin")
@click.argument("run", default="latest")
@click.pass_context
def pin_command(ctx: click.Context, run: str) -> None:
    """Keep RUN's results whatever the size limit says (default: latest)."""
    from ..maintenance import resolve_run
    from ..maintenance.eviction import pin

    cache = cache_from(ctx)
    record = resolve_run(cache, run)
    pin(cache, record.run_id)
    click.echo(f"pinned run {record.run_id} of {record.pipeline}")


@main.command("unpin")
@click.argument("run", default="latest")
@click.pass_context
def unpin_command(ctx: click.Context, run: str) -> None:
    """Let the size limit evict RUN's results again (default: latest)."""
    from ..maintenance import resolve_run
    from ..maintenance.eviction import unpin

    cache = cache_from(ctx)
    record = resolve_run(cache, run)
    if unpin(cache, record.run_id):
        click.echo(f"unpinned run {record.run_id} of {record.pipeline}")
    else:
        note(f"run {record.run_id} was not pinned")


@cache_group.command("pins")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def pins_command(ctx: click.Context, as_json: bool) -> None:
    """List the pinned runs."""
    from ..maintenance.eviction import pinned_runs

    pins = pinned_runs(cache_from(ctx))
    if as_json:
        echo_json(pins)
        return
    for run_id in pins:
        click.echo(run_id)
    if not pins:
        note("no pinned runs")


def echo_eviction(report: object, as_json: bool) -> None:
    """One eviction report, as text or JSON (shared by gc --max-size)."""
    from ..maintenance.eviction import EvictionReport

    assert isinstance(report, EvictionReport)
    if as_json:
        echo_json(report.to_json())
        return
    verb = "would evict" if report.dry_run else "evicted"
    click.echo(
        f"{verb} {plural(len(report.evicted_steps), 'step entry', 'step entries')} and "
        f"{plural(report.deleted_objects, 'object')} ({human_bytes(report.freed_bytes)}): "
        f"{human_bytes(report.before)} -> {human_bytes(report.after)}, "
        f"limit {human_bytes(report.limit)}"
    )
    if report.latest_evicted:
        note(
            "the limit could only be met by evicting the latest run of "
            + ", ".join(report.latest_evicted)
        )
    if report.over_limit:
        note(
            "still over the limit: what is left is pinned, being executed, or younger than "
            "the grace period; raise the limit or unpin runs"
        )
