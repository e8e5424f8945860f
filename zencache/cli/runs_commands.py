"""`zencache runs ls | show` and `zencache lineage`: recorded runs and provenance.

Formatting only: the lookups live in zencache.maintenance. Data goes to stdout,
diagnostics to stderr.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from ..storage.records import RunRecord
from .app import cache_from, main, runs_group
from .cache_commands import (
    echo_json,
    format_table,
    human_duration,
    human_time,
    note,
    outputs_cell,
    plural,
    short,
)

if TYPE_CHECKING:
    from .. import maintenance

_PARAMS_WIDTH = 40


def _step_counts(record: RunRecord) -> str:
    counts: dict[str, int] = {}
    for s in record.steps:
        counts[s.status] = counts.get(s.status, 0) + 1
    return ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "-"


def _params(params: dict[str, str], width: int | None = None) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items()) or "-"
    if width is not None and len(text) > width:
        text = text[: width - 3] + "..."
    return text


@runs_group.command("ls")
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    metavar="N",
    help="Show the newest N runs (0: all).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def runs_ls(ctx: click.Context, limit: int, as_json: bool) -> None:
    """List recorded runs, newest first."""
    from .. import maintenance  # at run time: --help stays fast

    cache = cache_from(ctx)
    runs = maintenance.list_runs(cache, limit or None)
    if as_json:
        echo_json(
            [
                {
                    "run_id": r.run_id,
                    "pipeline": r.pipeline,
                    "target": r.target,
                    "status": r.status,
                    "started": r.started,
                    "finished": r.finished,
                    "duration": r.finished - r.started,
                    "params": r.params,
                    "steps": {s.name: s.status for s in r.steps},
                }
                for r in runs
            ]
        )
        return
    if not runs:
        note("no runs recorded")
        return
    rows = [
        (
            r.run_id,
            r.pipeline,
            r.status,
            human_time(r.started),
            human_duration(r.finished - r.started),
            _step_counts(r),
            _params(r.params, _PARAMS_WIDTH),
        )
        for r in runs
    ]
    click.echo(
        format_table(
            ("RUN", "PIPELINE", "STATUS", "STARTED", "TIME", "STEPS", "PARAMS"), rows, right={4}
        )
    )
    total = maintenance.count_runs(cache)
    if total > len(runs):
        note(f"showing the newest {len(runs)} of {total} runs; --limit 0 shows all")


@runs_group.command("show")
@click.argument("run", default="latest")
@click.option("--json", "as_json", is_flag=True, help="Print the complete provenance record.")
@click.pass_context
def runs_show(ctx: click.Context, run: str, as_json: bool) -> None:
    """One run: its steps, statuses, durations, parameters, outputs and environment.

    RUN is a run id, a unique prefix of one, its random suffix, or 'latest'
    (the default). --json prints the whole record, with the environment and,
    for every step, how its key was made.
    """
    from .. import maintenance  # at run time: --help stays fast

    details = maintenance.run_details(cache_from(ctx), run)
    if as_json:
        echo_json(details.to_json())
        return
    r = details.record
    env = details.environment
    header = [
        ("run", r.run_id),
        ("pipeline", r.pipeline + (f" (target {r.target})" if r.target else "")),
        ("status", r.status),
        ("started", f"{human_time(r.started)} (took {human_duration(r.finished - r.started)})"),
        ("parameters", _params(r.params)),
        (
            "environment",
            (
                f"Python {env.python} ({env.implementation}) on {env.platform}; "
                f"{plural(len(env.distributions), 'distribution')}; env {short(env.env_id)}"
            )
            if env
            else f"env {short(r.env_id)} (record missing)",
        ),
    ]
    if r.output:
        header.append(("output", ", ".join(r.output)))
    width = max(len(k) for k, _ in header)
    click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in header))
    click.echo()
    rows = []
    for s in r.steps:
        entry = details.entries.get(s.name)
        params = _params({n: p.get("repr", "") for n, p in entry.params.items()}) if entry else ""
        rows.append(
            (
                s.name,
                s.status,
                human_duration(s.duration),
                short(s.key),
                outputs_cell(list(s.outputs.items())),
                params if entry else ("-" if s.status in ("failed", "skipped") else "(gone)"),
            )
        )
    click.echo(
        format_table(("STEP", "STATUS", "TIME", "KEY", "OUTPUTS", "PARAMS"), rows, right={2})
    )
    logged = [(s.name, details.logged(s.name)) for s in r.steps]
    if any(found["metrics"] or found["metadata"] for _, found in logged):
        click.echo()
        for name, found in logged:
            if found["metrics"]:
                click.echo(f"{name}: metrics {_values(found['metrics'])}")
            if found["metadata"]:
                click.echo(f"{name}: metadata {_values(found['metadata'])}")
    for s in r.steps:
        if s.error:
            last = s.error.strip().splitlines()[-1] if s.error.strip() else ""
            click.echo(f"{s.name}: {last}")


def _values(values: dict[str, object]) -> str:
    return ", ".join(
        f"{k}={format(v, '.6g') if isinstance(v, float) else v}" for k, v in values.items()
    )


@main.command("lineage")
@click.argument("artifact")
@click.option("--json", "as_json", is_flag=True, help="Print the tree as JSON.")
@click.pass_context
def lineage_command(ctx: click.Context, artifact: str, as_json: bool) -> None:
    """Which code, parameters and inputs made ARTIFACT, back to the sources.

    ARTIFACT is a content id (or a unique prefix of at least 8 hex digits, as
    'zencache cache ls' shows) or RUN:STEP[.OUTPUT], RUN being a run id, a
    unique prefix or 'latest' (e.g. latest:trainer, latest:importer.X_train).
    """
    from .. import maintenance  # at run time: --help stays fast

    found = maintenance.lineage(cache_from(ctx), artifact)
    if as_json:
        echo_json(found.to_json())
        return
    root = found.root
    if found.content_id is not None:
        click.echo(f"artifact {found.content_id} is output {found.output!r} of step {root.name!r}")
    else:
        click.echo(f"step {root.name!r} of run {found.run_id}")
    click.echo("\n".join(_render(root, "")))


def _render(node: maintenance.LineageNode, indent: str) -> list[str]:
    head = f"{indent}{node.name}  [{node.step} in {node.pipeline}]"
    if node.repeated:
        return [f"{head}  key {short(node.key)} (shown above)"]
    lines = [head]
    detail = indent + "    "
    lines.append(
        f"{detail}key {short(node.key)}  code {short(node.fingerprint)}  "
        f"run {node.run_id or '-'}  created {human_time(node.created)}"
    )
    if node.params:
        lines.append(f"{detail}params: {_params(node.params)}")
    if node.untracked:
        lines.append(f"{detail}untracked by the fingerprint: {', '.join(node.untracked)}")
    if node.other_producers:
        others = ", ".join(short(k) for k in node.other_producers)
        lines.append(f"{detail}same output also produced by: {others}")
    if not node.inputs:
        lines.append(f"{detail}(a source: no inputs)")
    for item in node.inputs:
        if item.producer is None:
            lines.append(
                f"{detail}<- {item.name} = {short(item.content_id)} (producer not in the cache)"
            )
            continue
        lines.append(
            f"{detail}<- {item.name} = {short(item.content_id)} "
            f"({item.producer.name}.{item.output})"
        )
        lines.extend(_render(item.producer, detail + "   "))
    return lines
