"""`zencache push [RUN]` and `zencache pull RUN[:STEP]`: a run to and from the remote
cache. Formatting only: the work is in zencache.maintenance.remote_sync."""

from __future__ import annotations

import click

from .app import cache_from, main, remote_options
from .cache_commands import echo_json, human_bytes, plural


@main.command("push", short_help="Upload a run's entries and objects to the remote cache.")
@click.argument("run", default="latest")
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def push_command(ctx: click.Context, run: str, as_json: bool) -> None:
    """Upload RUN's step entries and their objects (objects first) to the remote cache.

    What the remote holds already is not sent again. Runs made with uploads deferred
    (remote_upload = "defer", ZENCACHE_REMOTE_UPLOAD=defer) are published this way.

    \b
    Examples:
      zencache --remote s3://team-bucket/zencache push
      zencache push latest --remote file:///mnt/share/zencache
    """
    from ..maintenance.remote_sync import push

    report = push(cache_from(ctx), run)
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(
        f"pushed run {report.run_id}: {plural(report.steps, 'step entry', 'step entries')}, "
        f"{plural(report.objects, 'new object')} ({human_bytes(report.bytes)})"
    )
    for line in report.skipped:
        click.echo(f"skipped {line}", err=True)


@main.command("pull", short_help="Fetch a run's data from the remote cache.")
@click.argument("ref", metavar="RUN[:STEP]", default="latest")
@remote_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def pull_command(ctx: click.Context, ref: str, as_json: bool) -> None:
    """Fetch the outputs of RUN (or of one STEP of it) into the local cache, verified,
    so that they load offline. RUN is a local run (latest, an id or a prefix), or the id
    of a run another machine pushed.

    \b
    Examples:
      zencache pull latest
      zencache pull 20260101T120000.000000-a1b2c3:trainer
    """
    from ..maintenance.remote_sync import pull

    report = pull(cache_from(ctx), ref)
    if as_json:
        echo_json(report.to_json())
        return
    click.echo(
        f"pulled run {report.run_id}: {plural(report.steps, 'step')}, "
        f"{human_bytes(report.bytes)} fetched"
    )
