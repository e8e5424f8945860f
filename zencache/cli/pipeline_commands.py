"""Commands on a TARGET pipeline: `run`, `cache status`, `explain`, `dag`.

Only presentation lives here: the target loader (target.py), the executors and
status.py do the work. User code, numpy and the executors are imported inside
the commands, so that `zencache --help` stays instant.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import click

from ..errors import StepFailedError, ZencacheError
from . import output
from .app import cache_from, cache_group, main, remote_options, settings_from
from .cache_commands import echo_json
from .durations import human_duration
from .external import external_lines

if TYPE_CHECKING:
    from ..core.runs import Run
    from ..executors.events import CacheEvent
    from ..inspection.status import Explanation, StepStatus
    from .progress import Progress
    from .target import Target

_PARAM_HELP = "A pipeline parameter; VALUE is JSON where it parses (0.01, true, [1,2]), else text."
_SCALAR_TYPES = {
    f"builtins:{name}" for name in ("int", "float", "bool", "str", "bytes", "NoneType", "complex")
}
_OUTPUT_SHOW_LIMIT = 1024  # bytes of stored artifact, and characters of repr, worth printing


def _param_option(fn: Any) -> Any:
    return click.option(
        "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help=_PARAM_HELP
    )(fn)


def _load(target: str, params: Sequence[str]) -> Target:
    """Import and bind TARGET; a pipeline the module runs at import time is skipped (noted)."""
    from .target import load_target

    loaded = load_target(target, params)
    for line in loaded.notes():
        click.echo(line, err=True)
    return loaded


# --- run --------------------------------------------------------------------------------------


@main.command("run", short_help="Run a pipeline, reusing cached steps.")
@click.argument("target")
@_param_option
@click.option(
    "--no-cache", is_flag=True, help="Execute every step even when cached; results are stored."
)
@click.option(
    "--executor",
    default=None,
    help="Where steps run: local (one step at a time in this process), processes (worker "
    "processes on this machine), dask (a Dask cluster; see --scheduler). Default: executor "
    "under [tool.zencache] or $ZENCACHE_EXECUTOR, else local.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="How many steps may run at once, for the processes and dask executors. Default: "
    "workers under [tool.zencache] or $ZENCACHE_WORKERS, else one per core.",
)
@click.option(
    "--scheduler",
    metavar="ADDRESS",
    default=None,
    help="The Dask scheduler for --executor dask, e.g. tcp://host:8786 (the cache directory "
    "must be on storage every worker shares); without it a local cluster is started.",
)
@remote_options
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run as one JSON object (run_id, pipeline, status, duration, steps, output) "
    "instead of the table; the steps' own prints go to stderr.",
)
@click.pass_context
def run_command(
    ctx: click.Context,
    target: str,
    params: tuple[str, ...],
    no_cache: bool,
    executor: str | None,
    workers: int | None,
    scheduler: str | None,
    as_json: bool,
) -> None:
    """Run the pipeline TARGET (module:pipeline or path/file.py:pipeline), reusing the cache.

    \b
    Examples:
      zencache run examples/digits/pipeline.py:digits
      zencache run examples/digits/pipeline.py:digits -p gamma=0.01
      zencache run examples/digits/pipeline.py:seed_pipeline --no-cache
    """
    from ..executors import make_executor, run_pipeline
    from ..storage.cache import Cache
    from .progress import Progress

    settings = settings_from(ctx)
    executor = executor or settings.executor
    workers = workers if workers is not None else settings.workers
    # An unknown executor, or a missing extra, fails before user code is imported.
    chosen = make_executor(executor, workers, scheduler)
    loaded = _load(target, params)
    given = ctx.find_root().obj
    cache = Cache(
        settings.cache_dir, remote=given.get("remote"), remote_mode=given.get("remote_mode")
    )
    tty = not as_json and sys.stderr.isatty()
    progress = Progress(loaded.instance.trace(), tty)
    started = time.perf_counter()
    try:
        run = run_pipeline(
            loaded.instance,
            executor=chosen,
            cache=cache,
            force=no_cache,
            listeners=[progress],
            target=target,
        )
    except (KeyboardInterrupt, click.exceptions.Exit):
        progress.close()
        raise
    except Exception as exc:
        progress.close()
        steps = progress.steps()
        if steps:
            if as_json:
                took = time.perf_counter() - started
                echo_json(_failed_json(progress, loaded, took))
            else:
                _echo_table(_rows(steps))
        failed = [e.step for e in steps if e.status == "failed"]
        if failed and not isinstance(exc, ZencacheError):
            # A user materializer (or other user code around the step) raised: still
            # the step's failure, not zencache's internal error.
            raise StepFailedError(f"step {failed[0]!r} failed: {_last_line(exc)}") from exc
        raise
    progress.close()
    elapsed = time.perf_counter() - started
    if as_json:
        echo_json(_run_json(run, progress, loaded, elapsed))
        return
    _echo_table(_rows(progress.steps()))
    counts: dict[str, int] = {}
    for event in progress.steps():
        status = event.status or ""
        counts[status] = counts.get(status, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    click.echo(
        f"\nrun {run.run_id}: {run.status} ({summary}) in {human_duration(elapsed, precise=True)}"
    )
    shown = _small_output(run)
    if shown is not None:
        click.echo(f"output: {shown}")


def _run_json(run: Run, progress: Progress, loaded: Target, elapsed: float) -> dict[str, Any]:
    """The documented shape of `run --json`."""
    return {
        "run_id": run.run_id,
        "pipeline": loaded.instance.name,
        "target": loaded.text,
        "status": run.status,
        "duration": elapsed,
        "steps": _json_steps(progress.steps()),
        "output": _json_output(run),
    }


def _failed_json(progress: Progress, loaded: Target, elapsed: float) -> dict[str, Any]:
    """`run --json` of a run that raised: the steps its events settled; its id when
    the run record was written (it is, for failed steps, before the error is raised)."""
    ended = progress.run_ended
    return {
        "run_id": ended.run_id if ended is not None and ended.recorded else None,
        "pipeline": loaded.instance.name,
        "target": loaded.text,
        "status": ended.status if ended is not None else "failed",
        "duration": elapsed,
        "steps": _json_steps(progress.steps()),
        "output": None,
    }


def _json_steps(steps: Sequence[CacheEvent]) -> list[dict[str, Any]]:
    return [
        {"step": e.step, "status": e.status, "duration": e.duration, "key": e.key or None}
        for e in steps
    ]


def _json_output(run: Run) -> Any:
    """The pipeline's return value when it is a few JSON-able scalars, else None."""
    if _small_output(run) is None or not run.record.output:
        return None
    value = run.output()
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return None
    return value


def _rows(steps: Sequence[CacheEvent]) -> list[tuple[str, ...]]:
    """The run table, from each step's last outcome."""
    from .progress import status_label

    return [
        (e.step, status_label(e), human_duration(e.duration, precise=True), e.key[:12] or "-")
        for e in steps
    ]


def _status_label(status: str, source: str) -> str:
    """`cached (remote)` for a hit another machine computed."""
    return f"{status} (remote)" if status == "cached" and source == "remote" else status


def _echo_table(rows: list[tuple[str, ...]]) -> None:
    header = ("step", "status", "duration", "key")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    colored = output.color_enabled()
    for number, row in enumerate([header, *rows]):
        status = row[1].ljust(widths[1])
        cells = [
            row[0].ljust(widths[0]),
            output.paint(status, row[1], colored and number > 0),
            row[2].rjust(widths[2]),
            row[3],
        ]
        output.echo("  ".join(cells).rstrip(), colored=colored)


def _small_output(run: Run) -> str | None:
    """The pipeline output's repr when it is a few builtin scalars; big data is not loaded."""
    refs = run.record.output
    if not refs:
        return None
    index = run.cache.index
    described = []
    for ref in refs:
        step_name, _, output = ref.partition(".")  # an output name may hold a dot
        content_id = run.steps[step_name].outputs.get(output)
        record = None if content_id is None else index.get_artifact(content_id)
        if record is None:
            return None
        if record.type_name not in _SCALAR_TYPES or record.size > _OUTPUT_SHOW_LIMIT:
            described.append(f"{record.type_name.replace(':', '.')} ({record.size} bytes)")
    if described:
        return ", ".join(described) + " (not loaded; use Run.output() in Python)"
    text = repr(run.output())
    if len(text) > _OUTPUT_SHOW_LIMIT:
        text = text[: _OUTPUT_SHOW_LIMIT - 3] + "..."
    return text


def _last_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[-1]}" if lines else type(exc).__name__


# --- cache status -----------------------------------------------------------------------------


@cache_group.command("status", short_help="Which steps are cached, stale (and why) or new.")
@click.argument("target")
@_param_option
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON list of {step, status, reasons}."
)
@remote_options
@click.pass_context
def status_command(ctx: click.Context, target: str, params: tuple[str, ...], as_json: bool) -> None:
    """Which steps of TARGET are cached, stale (and why) or new, without running anything.

    \b
    Example:
      zencache cache status examples/digits/pipeline.py:digits -p gamma=0.01
    """
    from .phrasing import reason_lines, status_json

    statuses = _statuses(ctx, target, params)
    if as_json:
        echo_json([status_json(s) for s in statuses])
        return
    width = max(len(s.step) for s in statuses)
    colored = output.color_enabled()
    for s in statuses:
        reasons = reason_lines(s.reasons)
        if s.untracked:
            more = f" (+{len(s.untracked) - 1} more, see explain)" if len(s.untracked) > 1 else ""
            reasons.append(f"note: not tracked: {s.untracked[0]}{more}")
        status = output.paint(_status_label(s.status, s.source).ljust(6), s.status, colored)
        line = f"{s.step.ljust(width)}  {status}  {'; '.join(reasons)}"
        output.echo(line.rstrip(), colored=colored)


def _statuses(ctx: click.Context, target: str, params: Sequence[str]) -> list[StepStatus]:
    from ..inspection.status import pipeline_status

    loaded = _load(target, params)
    return pipeline_status(loaded.instance, cache_from(ctx))


# --- explain ----------------------------------------------------------------------------------


@main.command("explain", short_help="What makes a step's cache key; what changed.")
@click.argument("target")
@click.argument("step")
@_param_option
@click.option("--json", "as_json", is_flag=True, help="Print the breakdown as one JSON object.")
@click.pass_context
def explain_command(
    ctx: click.Context, target: str, step: str, params: tuple[str, ...], as_json: bool
) -> None:
    """Show what makes STEP's cache key and what changed since its last run.

    \b
    Example:
      zencache explain examples/digits/pipeline.py:digits svc_trainer -p gamma=0.01
    """
    from ..inspection.status import explain
    from .phrasing import explanation_json

    loaded = _load(target, params)
    result = explain(loaded.instance, cache_from(ctx), step)
    if as_json:
        echo_json(explanation_json(result))
        return
    for line in _explain_lines(result):
        click.echo(line)


def _explain_lines(e: Explanation) -> list[str]:
    from .phrasing import change_text

    s = e.status
    lines = [
        f"step {e.step} of pipeline {e.pipeline}: {s.status}",
        f"  key        {s.key or '(not computable yet: an upstream step will run first)'}",
        f"  identity   {e.identity}",
    ]
    code = e.code
    if code["version"] is not None:
        lines.append(f"  code       version:{code['version']} (pinned with @step(version=...))")
    else:
        lines.append(f"  code       fingerprint {code['fingerprint']}")
        width = max((len(p) for p in code["parts"]), default=0)
        lines += [f"    {part.ljust(width)}  {value}" for part, value in code["parts"].items()]
    lines.append("  parameters" + ("" if e.params else "  (none)"))
    width = max((len(n) for n in e.params), default=0)
    for name, p in e.params.items():
        lines.append(f"    {name.ljust(width)}  {p['hash']}  = {p['repr']}")
    if e.ignored:
        lines.append(f"    ignored (not in the key): {', '.join(e.ignored)}")
    lines.append("  outputs" + ("" if e.outputs else "  (none)"))
    width = max((len(o["name"]) for o in e.outputs), default=0)
    lines += [f"    {o['name'].ljust(width)}  {o['materializer']}" for o in e.outputs]
    lines.append("  inputs" + ("" if e.inputs else "  (none)"))
    width = max((len(n) for n in e.inputs), default=0)
    for name, i in e.inputs.items():
        content = i["content_id"] or "(unknown until the upstream step runs)"
        lines.append(f"    {name.ljust(width)}  <- {i['from']}  {content}")
    if e.external:
        lines.append("  read from outside (by content)")
        lines += [f"    {line}" for line in external_lines(e.external)]
    lines.append(f"  static part of the key  {e.static}")
    if e.previous is None:
        lines.append("last recorded key: none (never run in this pipeline)")
    else:
        previous = e.previous
        when = ""
        if previous.get("created"):
            when = time.strftime(" at %Y-%m-%d %H:%M:%S", time.localtime(previous["created"]))
        run = f" (run {previous['run_id']}{when})" if previous.get("run_id") else ""
        lines.append(f"last recorded key: {previous['key']}{run}")
        if e.changes:
            lines.append("changes since then:")
            for change in e.changes:
                lines.append(f"  - {change_text(change)}")
                if change.kind == "code" and change.before and change.after:
                    lines.append(f"      {change.before} -> {change.after}")
        elif s.status == "cached":
            lines.append("changes since then: none")
    if e.untracked:
        lines.append("untracked (the fingerprint cannot see these; pin version= if they matter):")
        lines += [f"  - {note}" for note in e.untracked]
    return lines


# --- dag --------------------------------------------------------------------------------------


@main.command("dag", short_help="Draw a pipeline's steps with their cache status.")
@click.argument("target")
@_param_option
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "mermaid", "dot"]),
    default="text",
    show_default=True,
    help="text for a terminal, mermaid for Markdown, dot for Graphviz.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print {pipeline, steps: [{step, status, inputs: [{name, from, output}]}]}.",
)
@click.pass_context
def dag_command(
    ctx: click.Context, target: str, params: tuple[str, ...], fmt: str, as_json: bool
) -> None:
    """Draw TARGET's steps, how artifacts flow between them, and each step's cache status.

    \b
    Examples:
      zencache dag examples/digits/pipeline.py:digits
      zencache dag examples/digits/pipeline.py:digits --format dot | dot -Tsvg > dag.svg
    """
    from ..core.steps import SINGLE_OUTPUT
    from ..inspection.status import pipeline_status

    loaded = _load(target, params)
    dag = loaded.instance.trace()
    statuses = {s.step: s.status for s in pipeline_status(loaded.instance, cache_from(ctx))}
    edges: dict[tuple[str, str], list[str]] = {}
    for inv in dag.invocations.values():
        for name in sorted(inv.inputs):
            handle = inv.inputs[name]
            # A single output is called "output": the input's name says more.
            same = handle.output in (name, SINGLE_OUTPUT)
            label = name if same else f"{handle.output}->{name}"
            edges.setdefault((handle.invocation, inv.name), []).append(label)
    if as_json:
        steps = [
            {
                "step": inv.name,
                "status": statuses[inv.name],
                "inputs": [
                    {"name": name, "from": h.invocation, "output": h.output}
                    for name, h in sorted(inv.inputs.items())
                ],
            }
            for inv in dag.invocations.values()
        ]
        echo_json({"pipeline": dag.pipeline, "steps": steps})
        return
    render = {"text": _dag_text, "mermaid": _dag_mermaid, "dot": _dag_dot}[fmt]
    for line in render(dag.pipeline, list(dag.invocations), statuses, edges):
        output.echo(line, colored=fmt == "text" and output.color_enabled())


_COLORS = {"cached": "#c8e6c9", "stale": "#ffe0b2", "new": "#bbdefb"}


def _dag_text(
    pipeline: str,
    steps: list[str],
    statuses: Mapping[str, str],
    edges: dict[tuple[str, str], list[str]],
) -> list[str]:
    lines = [f"pipeline {pipeline}"]
    colored = output.color_enabled()
    width = max(len(s) for s in steps)
    for step in steps:
        inputs = [
            f"{src} ({', '.join(labels)})" for (src, dst), labels in edges.items() if dst == step
        ]
        arrow = f"  <- {'; '.join(inputs)}" if inputs else ""
        status = output.paint(f"[{statuses[step]}]".ljust(8), statuses[step], colored)
        lines.append(f"  {step.ljust(width)}  {status}{arrow}".rstrip())
    return lines


def _dag_mermaid(
    pipeline: str,
    steps: list[str],
    statuses: Mapping[str, str],
    edges: dict[tuple[str, str], list[str]],
) -> list[str]:
    ids = {step: f"s{i}" for i, step in enumerate(steps)}
    lines = ["flowchart TD", f"  %% pipeline {pipeline}"]
    for step in steps:
        lines.append(f'  {ids[step]}["{step}<br/>{statuses[step]}"]:::{statuses[step]}')
    for (src, dst), labels in edges.items():
        lines.append(f'  {ids[src]} -->|"{", ".join(labels)}"| {ids[dst]}')
    for status, color in _COLORS.items():
        lines.append(f"  classDef {status} fill:{color},stroke:#555")
    return lines


def _dag_dot(
    pipeline: str,
    steps: list[str],
    statuses: Mapping[str, str],
    edges: dict[tuple[str, str], list[str]],
) -> list[str]:
    lines = [
        f"digraph {json.dumps(pipeline)} {{",
        "  rankdir=TB;",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica"];',
    ]
    for step in steps:
        label = json.dumps(f"{step}\n{statuses[step]}")
        color = json.dumps(_COLORS[statuses[step]])
        lines.append(f"  {json.dumps(step)} [label={label}, fillcolor={color}];")
    for (src, dst), labels in edges.items():
        lines.append(
            f"  {json.dumps(src)} -> {json.dumps(dst)} [label={json.dumps(', '.join(labels))}];"
        )
    lines.append("}")
    return lines
