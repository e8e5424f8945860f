"""`zencache audit RUN`: re-execute a recorded run's steps and compare their outputs.

Formatting and exit codes only: the audit lives in zencache.inspection.audit. The report goes
to stdout, progress notes to stderr. Exit 0 when every checked step reproduced
(or is declared nondeterministic), 1 otherwise; with --strict a step that could
not be checked fails the audit too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .app import cache_from, main
from .cache_commands import echo_json, format_table, human_duration, note, plural, short

if TYPE_CHECKING:
    from ..inspection import audit

# More drift lines than this (a virtualenv rebuilt from scratch) are summarised.
_DRIFT_LINES = 12


@main.command("audit")
@click.argument("run", default="latest")
@click.option(
    "--steps",
    "steps",
    multiple=True,
    metavar="NAME",
    help="Audit only these steps (repeat, or separate with commas).",
)
@click.option(
    "--twice",
    is_flag=True,
    help="Execute each step twice, in two fresh interpreters, to tell nondeterminism "
    "from environment drift.",
)
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Re-execute this many steps at once.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Give up on a step's re-execution after this long (it is then not checkable).",
)
@click.option("--strict", is_flag=True, help="Fail (exit 1) when a step is not checkable.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
def audit_command(
    ctx: click.Context,
    run: str,
    steps: tuple[str, ...],
    twice: bool,
    jobs: int,
    timeout: float | None,
    strict: bool,
    as_json: bool,
) -> None:
    """Re-execute RUN's steps from their recorded inputs and parameters, ignoring the
    cache, each in a fresh interpreter, and compare every output's content id with
    the recorded one. Also reports how the environment drifted since.

    RUN is a run id, a unique prefix of one, or 'latest' (the default). Nothing the
    audit computes is stored. Exit status 0 when every checked step reproduces
    (steps declared @step(deterministic=False) may differ), 1 otherwise.
    """
    from ..inspection import audit  # at run time: --help stays fast

    names = tuple(n.strip() for group in steps for n in group.split(",") if n.strip())
    cache = cache_from(ctx)
    if not as_json:
        what = "twice each" if twice else "once each"
        note(f"auditing {'steps ' + ', '.join(names) if names else 'every step'} ({what})...")
    report = audit.audit_run(cache, run, steps=names, twice=twice, jobs=jobs, timeout=timeout)
    if as_json:
        echo_json(report.to_json())
    else:
        _print(report)
    unchecked = report.counts.get(audit.NOT_CHECKABLE, 0)
    if not report.ok or (strict and unchecked):
        ctx.exit(1)


def _print(report: audit.AuditReport) -> None:
    from ..inspection import audit

    executions = "two executions" if report.twice else "one execution"
    click.echo(f"audit of run {report.run_id} ({report.pipeline}), {executions} per step")
    rows = [
        (s.name, s.status, "-" if s.status == audit.NOT_CHECKABLE else human_duration(s.duration))
        for s in report.steps
    ]
    click.echo(format_table(("STEP", "STATUS", "TIME"), rows, right={2}))
    explained = [s for s in report.steps if s.reason or s.drift]
    if explained:
        click.echo()
    for s in explained:
        click.echo(f"{s.name}: {s.status}" + (f": {s.reason}" if s.reason else ""))
        if s.drift:
            click.echo(
                f"  it was executed in environment {short(s.env_id)}, which differs from "
                f"now: {_drift_summary(s.drift)}"
            )
    click.echo()
    if not report.recorded_env_found:
        click.echo(
            f"environment: the run's environment record {short(report.env_id)} is no longer "
            "in the cache; drift cannot be checked"
        )
    elif not report.drift:
        click.echo(f"environment: unchanged since the run ({short(report.env_id)})")
    else:
        click.echo(
            f"environment drift since the run ({short(report.env_id)} -> "
            f"{short(report.current_env_id)}):"
        )
        for item in report.drift[:_DRIFT_LINES]:
            click.echo(f"  {item}")
        if len(report.drift) > _DRIFT_LINES:
            click.echo(f"  ... and {len(report.drift) - _DRIFT_LINES} more (--json lists all)")
    summary = ", ".join(f"{n} {status}" for status, n in report.counts.items()) or "no steps"
    if not report.ok:
        verdict = "FAILED"
    elif report.checked:
        verdict = "ok"
    else:
        verdict = "nothing could be checked (--strict makes that a failure)"
    click.echo(
        f"{verdict}: {summary} ({plural(report.checked, 'step')} checked in "
        f"{human_duration(report.duration)})"
    )


def _drift_summary(drift: tuple[audit.Drift, ...]) -> str:
    shown = "; ".join(str(d) for d in drift[:3])
    return shown + (f"; and {len(drift) - 3} more" if len(drift) > 3 else "")
