"""`zencache show`, `zencache runs diff` and `zencache report`: results as data.

Formatting only: the views, summaries and diffs live in zencache.results. Data
goes to stdout, diagnostics to stderr.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from .app import cache_from, main, runs_group
from .cache_commands import echo_json, format_table, note, plural, short

if TYPE_CHECKING:
    from .. import results


@main.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=True, path_type=Path),
    metavar="FILE",
    help="Export the artifact's files (a folder when it has several).",
)
@click.pass_context
def show_command(ctx: click.Context, ref: str, as_json: bool, out: Path | None) -> None:
    """Show an artifact: its value when small, else a summary by type.

    REF is RUN:STEP[.OUTPUT] (RUN: an id, a prefix, 'latest', 'NAME@latest') or
    a content id. Arrays show shape, dtype and statistics; DataFrames shape,
    dtypes and the first rows; scikit-learn estimators their class and
    parameters; anything else its size and content id.
    """
    from .. import results  # at run time: --help stays fast

    cache = cache_from(ctx)
    targets = _targets(cache, ref)
    if out is not None:
        if len(targets) != 1:
            names = ", ".join(label for label, _ in targets)
            raise UsageError(f"{ref} has several outputs ({names}); name one for --out")
        ((_, content_id),) = targets
        try:
            written = results.export_files(cache, _artifact(cache, content_id), out)
        except OSError as exc:
            raise UsageError(
                f"cannot write {out}: {exc.strerror or exc}; pass another --out"
            ) from exc
        for path in written:
            click.echo(str(path))
        note(f"exported {plural(len(written), 'file')} of artifact {content_id}")
        return
    summaries = [
        (label, results.summarize(cache.store, _artifact(cache, cid))) for label, cid in targets
    ]
    if as_json:
        if len(summaries) == 1:
            echo_json(summaries[0][1])
        else:
            echo_json({label: summary for label, summary in summaries})
        return
    for number, (label, summary) in enumerate(summaries):
        if len(summaries) > 1:
            click.echo(("\n" if number else "") + f"{label}:")
        click.echo("\n".join(results.render(summary)))


def _targets(cache: Any, ref: str) -> list[tuple[str, str]]:
    """(label, content id) of each artifact REF names: every output of a step
    named without one."""
    from .. import maintenance, results

    run_ref, colon, step_ref = ref.strip().partition(":")
    if not colon:
        return [(ref, results.resolve_artifact_id(cache, ref))]
    step_name, dot, _ = step_ref.partition(".")
    if dot:
        return [(ref, results.resolve_artifact_id(cache, ref))]
    from ..core.runs import Run

    run = Run(maintenance.resolve_run(cache, run_ref), cache)
    step = results.find_step(run, step_name)
    if not step.outputs:
        raise UsageError(
            f"step {step.name!r} of run {run.id} has no outputs (status {step.status}); "
            f"'zencache runs show {run.id}' says why"
        )
    return [(f"{step.name}.{name}", cid) for name, cid in step.outputs.items()]


def _artifact(cache: Any, content_id: str) -> Any:
    record = cache.index.get_artifact(content_id)
    if record is None:
        raise UsageError(
            f"artifact {content_id} is no longer in the cache at {cache.path} (removed by gc, "
            "clear or verify --repair); rerun the pipeline to recreate it"
        )
    return record


@runs_group.command("diff")
@click.argument("a")
@click.argument("b", default="latest")
@click.option("--all", "show_all", is_flag=True, help="Also list unchanged steps and metrics.")
@click.option("--no-metrics", is_flag=True, help="Do not load outputs to compare numbers (faster).")
@click.option("--json", "as_json", is_flag=True, help="Print the whole comparison as JSON.")
@click.pass_context
def runs_diff(
    ctx: click.Context, a: str, b: str, show_all: bool, no_metrics: bool, as_json: bool
) -> None:
    """What changed from run A to run B (default: latest).

    Parameters, per step which code changed (helper, constant, package), which
    parameters and inputs, whether it ran or hit, which outputs got other
    content ids, and numeric outputs (numbers, dicts of numbers) and logged
    metrics side by side with their deltas. Runs are ids, prefixes, 'latest',
    'NAME@latest', or either with ~N (N runs before it): `runs diff latest~1`.
    """
    from .. import results

    cache = cache_from(ctx)
    found = results.diff_runs(
        results.Cache(cache.path).run(a), results.Cache(cache.path).run(b), metrics=not no_metrics
    )
    if as_json:
        data = found.to_json()
        for step_data, step_diff in zip(data["steps"], found.steps, strict=True):
            for code, change in zip(step_data["code"], step_diff.code, strict=True):
                code["description"] = describe_code(change)
        echo_json(data)
        return
    click.echo("\n".join(render_diff(found, show_all)))


def describe_code(change: results.CodeChange) -> str:
    """A changed fingerprint part in words: "helper `fit` in helpers.py", ..."""
    from .phrasing import describe_part  # at run time: it loads the status model

    a, b = change.a or "", change.b or ""
    if change.part == "version":
        if a.startswith("version:") and b.startswith("version:"):
            return f"version {a.removeprefix('version:')} -> {b.removeprefix('version:')}"
        if b.startswith("version:"):
            return f"pinned: version {b.removeprefix('version:')}"
        return f"no longer pinned (was version {a.removeprefix('version:')})"
    if not change.part:
        return f"fingerprint {a[:12]} -> {b[:12]} (the fingerprint format changed)"
    return describe_part(change.part, change.a, change.b, change.own)


def render_diff(found: results.RunDiff, show_all: bool = False) -> list[str]:
    a, b = found.a, found.b
    lines = [
        f"a: {a.id}  {a.pipeline}, {a.status}",
        f"b: {b.id}  {b.pipeline}, {b.status}",
        "",
    ]
    if found.params:
        lines.append("parameters:")
        rows = [(c.name, _text(c.a), _text(c.b)) for c in found.params]
        lines.extend("  " + row for row in format_table(("NAME", "A", "B"), rows).splitlines())
    else:
        lines.append("parameters: no change")
    lines.append("")
    shown = found.steps if show_all else found.changed_steps
    unchanged = len(found.steps) - len(found.changed_steps)
    if shown:
        lines.append("steps:")
        rows = [
            (s.name, s.status_a or "(absent)", s.status_b or "(absent)", _changes(s)) for s in shown
        ]
        lines.extend(
            "  " + row for row in format_table(("STEP", "A", "B", "CHANGES"), rows).splitlines()
        )
        if unchanged and not show_all:
            lines.append(f"  ({plural(unchanged, 'step')} unchanged; --all lists them)")
    else:
        lines.append(f"steps: no change ({plural(len(found.steps), 'step')})")
    metrics = [m for m in found.metrics if show_all or m.changed]
    if metrics:
        lines.append("")
        lines.append("metrics:")
        rows = [(m.step, m.name, _number(m.a), _number(m.b), _delta(m.delta, m.a)) for m in metrics]
        lines.extend(
            "  " + row
            for row in format_table(
                ("STEP", "NAME", "A", "B", "CHANGE"), rows, right={2, 3, 4}
            ).splitlines()
        )
    elif found.metrics:
        lines.append("")
        lines.append(f"metrics: no change ({plural(len(found.metrics), 'number')})")
    return lines


def _changes(s: results.StepDiff) -> str:
    parts: list[str] = []
    if s.status_a is None:
        return "only in b"
    if s.status_b is None:
        return "only in a"
    parts.extend(f"code: {describe_code(c)}" for c in s.code)
    parts.extend(f"parameter {c.name}: {_text(c.a)} -> {_text(c.b)}" for c in s.params)
    if s.inputs:
        parts.append(
            f"{'inputs' if len(s.inputs) > 1 else 'input'} "
            f"{', '.join(c.name for c in s.inputs)} changed"
        )
    if s.outputs:
        parts.append(
            f"{'outputs' if len(s.outputs) > 1 else 'output'} "
            + ", ".join(f"{c.name} {short(c.a)} -> {short(c.b)}" for c in s.outputs)
        )
    if not parts and s.key_a != s.key_b:
        parts.append(f"key {short(s.key_a)} -> {short(s.key_b)}")
    if not parts and s.status_a != s.status_b:
        parts.append(
            "same key: " + ("hit in b" if s.status_b == "cached" else f"{s.status_b} in b")
        )
    return "; ".join(parts) or "-"


def _text(value: Any) -> str:
    return "(absent)" if value is None else str(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.6g}"


def _delta(delta: float | None, base: float | None) -> str:
    if delta is None:
        return "-"
    if delta == 0:
        return "0"
    text = f"{delta:+.6g}"
    if base:
        text += f" ({delta / abs(base):+.1%})"
    return text


@main.command("report")
@click.argument("run", default="latest")
@click.option(
    "-o",
    "--output",
    "output",
    type=click.Path(dir_okay=False, path_type=Path),
    default="report.html",
    show_default=True,
    help="The HTML file to write.",
)
@click.option("--diff", "other", metavar="OTHER", help="Highlight what changed since run OTHER.")
@click.option(
    "--no-previews", is_flag=True, help="Do not load outputs for previews (faster, smaller)."
)
@click.pass_context
def report_command(
    ctx: click.Context, run: str, output: Path, other: str | None, no_previews: bool
) -> None:
    """Write one self-contained HTML page about RUN (default: latest).

    The step graph coloured by status, a timeline of step durations, and per
    step its cache reason, parameters, code fingerprint parts, environment,
    lineage and output previews. It loads nothing from anywhere: open it from
    an e-mail attachment or a CI artifact.
    """
    from .. import results
    from . import report_html

    cache = results.Cache(cache_from(ctx).path)
    page = report_html.build_report(
        cache, cache.run(run), cache.run(other) if other else None, previews=not no_previews
    )
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}; pass another -o") from exc
    click.echo(str(output))
    note(f"wrote {len(page.encode()) / 1024:.0f} KiB")
