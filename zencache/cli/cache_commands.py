"""`zencache cache ls | stats | gc | verify | clear`, and the table and size formats
the other listing commands share. Formatting only: the decisions live in
zencache.maintenance. Data goes to stdout, diagnostics to stderr.
(`cache status` lives in pipeline_commands.)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from ..errors import UsageError
from . import output
from .app import cache_from, cache_group
from .durations import human_duration

if TYPE_CHECKING:
    from .. import maintenance

# --- shared formatting -----------------------------------------------------------------------

SHORT = 12  # hex digits shown for ids in tables; 'lineage' accepts any unique prefix >= 8


def short(identifier: str | None) -> str:
    return identifier[:SHORT] if identifier else "-"


def format_table(
    headers: Sequence[str], rows: Iterable[Sequence[str]], right: Iterable[int] = ()
) -> str:
    """Columns padded to their widest cell; `right` aligns numeric columns right."""
    rows = [list(map(str, r)) for r in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    right = set(right)

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(padded).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def human_bytes(n: int | None) -> str:
    if n is None:
        return "?"
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")


def human_time(timestamp: float) -> str:
    if not timestamp:
        return "-"
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else (nouns or noun + 's')}"


def echo_json(data: Any) -> None:
    """A JSON document on the real stdout (output.py keeps it pure under --json)."""
    output.data(json.dumps(data, indent=2))


def note(message: str) -> None:
    """A diagnostic: to stderr, so stdout stays data."""
    click.echo(message, err=True)


def _step_label(ref: maintenance.StepRef) -> str:
    return f"{ref.name} ({ref.pipeline}, key {short(ref.key)})"


# --- ls ----------------------------------------------------------------------------------------


@cache_group.command("ls")
@click.option("--step", "step", metavar="NAME", help="Only this step (name or module:qualname).")
@click.option(
    "--sort",
    type=click.Choice(["step", "last-used", "created", "size"]),
    default="step",
    show_default=True,
    help="Order: by pipeline and step, least recently used first (what eviction takes "
    "first), oldest first, or largest first.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls_command(ctx: click.Context, step: str | None, sort: str, as_json: bool) -> None:
    """List the cached step entries: step, pipeline, key, outputs, size, last used."""
    from .. import maintenance  # at run time: --help stays fast

    entries = maintenance.ls(cache_from(ctx), step, sort=sort)
    if as_json:
        echo_json([e.to_json() for e in entries])
        return
    if not entries:
        note(f"no step entries match {step!r}" if step else "no step entries in the cache")
        return
    rows = [
        (
            e.name,
            e.pipeline,
            short(e.key),
            outputs_cell([(o.name, o.content_id) for o in e.outputs]),
            human_bytes(e.size),
            human_time(e.created),
            human_time(e.last_used),
        )
        for e in entries
    ]
    header = ("STEP", "PIPELINE", "KEY", "OUTPUTS", "SIZE", "CREATED", "LAST USED")
    click.echo(format_table(header, rows, right={4}))
    total = sum(e.size for e in entries)
    note(f"{plural(len(entries), 'step entry', 'step entries')}, {human_bytes(total)} of outputs")


def outputs_cell(outputs: Sequence[tuple[str, str]], shown: int = 2) -> str:
    """`name=id` for the first outputs; steps with many would widen every row."""
    cells = [f"{name}={short(content_id)}" for name, content_id in outputs[:shown]]
    if len(outputs) > shown:
        cells.append(f"+{len(outputs) - shown} more")
    return ", ".join(cells) or "-"


# --- stats -------------------------------------------------------------------------------------


@cache_group.command("stats")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def stats_command(ctx: click.Context, as_json: bool) -> None:
    """Counts and sizes: entries, objects, bytes as materialized vs stored, dedupe."""
    from .. import maintenance  # at run time: --help stays fast

    s = maintenance.stats(cache_from(ctx))
    if as_json:
        echo_json(s.to_json())
        return
    ratio = f"{s.dedupe_ratio:.2f}x" if s.dedupe_ratio is not None else "-"
    rows = [
        ("cache", s.path),
        ("step entries", str(s.step_entries)),
        ("artifacts", str(s.artifacts)),
        ("runs", str(s.runs)),
        ("environments", str(s.environments)),
        ("objects", f"{s.objects} ({human_bytes(s.object_bytes)} on disk)"),
        ("  referenced", f"{s.referenced_objects} ({human_bytes(s.referenced_object_bytes)})"),
        (
            "  unreferenced",
            f"{s.unreferenced_objects} ({human_bytes(s.unreferenced_object_bytes)})"
            + ("; 'zencache cache gc' deletes them" if s.unreferenced_objects else ""),
        ),
        ("inline files", f"{s.inline_files} ({human_bytes(s.inline_bytes)} in the index)"),
        ("logical bytes", f"{human_bytes(s.logical_bytes)} (every artifact as materialized)"),
        ("stored bytes", f"{human_bytes(s.stored_bytes)} (referenced objects + inline)"),
        ("dedupe ratio", ratio),
        ("temporary files", f"{s.temporary_files} ({human_bytes(s.temporary_bytes)})"),
        ("index file", human_bytes(s.index_bytes)),
        ("size on disk", human_bytes(s.disk_bytes) + " (objects in whole blocks + index)"),
        ("size limit", _limit_cell(s)),
        ("last eviction", _eviction_cell(s)),
    ]
    if s.missing_objects:
        rows.append(("missing objects", f"{s.missing_objects}; run 'zencache cache verify'"))
    r = s.remote
    if any(r.values()):
        rows += [
            ("remote hits", f"{r['hits']} (misses {r['misses']}, refused entries {r['refused']})"),
            (
                "remote bytes",
                f"{human_bytes(r['bytes_down'])} down, {human_bytes(r['bytes_up'])} up "
                f"({plural(r['objects_up'], 'object')} uploaded)",
            ),
            ("remote errors", str(r["errors"])),
        ]
    width = max(len(k) for k, _ in rows)
    click.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in rows))


def _limit_cell(s: maintenance.CacheStats) -> str:
    if s.max_size is None:
        return "none (set max_size under [tool.zencache] or ZENCACHE_MAX_SIZE)"
    share = f"{100 * s.disk_bytes / s.max_size:.0f}% used" if s.max_size else ""
    return f"{human_bytes(s.max_size)} ({share}; from {s.max_size_source})"


def _eviction_cell(s: maintenance.CacheStats) -> str:
    e = s.last_eviction
    if e is None:
        return "never"
    return (
        f"{human_time(e.finished)}: {plural(len(e.evicted_steps), 'step entry', 'step entries')}, "
        f"{human_bytes(e.freed_bytes)} freed"
    )


# --- gc ----------------------------------------------------------------------------------------


@cache_group.command("gc")
@click.option(
    "--keep-last",
    type=click.IntRange(min=0),
    metavar="N",
    help="Remove each pipeline's run records beyond its newest N, and what only they used.",
)
@click.option(
    "--older-than",
    metavar="DURATION",
    help="Remove run records older than this (7d, 12h, 30m), and what only they used.",
)
@click.option(
    "--grace",
    default=None,
    metavar="DURATION",
    help="Spare objects and entries younger than this: a running pipeline may need them "
    "(default 10m; 1d with --remote, where uploads from other machines may be slow).",
)
@click.option(
    "--remote",
    "on_remote",
    is_flag=True,
    help="Collect the remote cache instead: delete remote objects that no remote entry "
    "names and that are older than --grace.",
)
@click.option(
    "--max-size",
    metavar="SIZE",
    help="Evict least-recently-used entries until the cache is under 90% of SIZE "
    "(20GB decimal, 20GiB binary), once; max_size in the settings does it after every run.",
)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def gc_command(
    ctx: click.Context,
    keep_last: int | None,
    older_than: str | None,
    grace: str | None,
    on_remote: bool,
    max_size: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Delete what nothing kept references.

    Without options every index entry is kept and only unreferenced objects
    (and stale temporary files) are deleted. --keep-last and --older-than also
    prune run records (given both, a run goes only when both say so), then the
    step entries no kept run names (the latest of every step always stays),
    the artifacts no kept step names, and finally their objects.
    """
    from .. import maintenance  # at run time: --help stays fast

    if on_remote:
        _gc_remote(ctx, grace or "1d", dry_run, as_json, keep_last, older_than)
        return
    grace = grace or "10m"
    if max_size is not None:
        from ..config import parse_size
        from ..maintenance.eviction import enforce
        from .size_commands import echo_eviction

        if keep_last is not None or older_than is not None:
            raise click.UsageError("--max-size goes alone; run gc twice to combine it")
        limit = parse_size(max_size, what="--max-size")
        eviction = enforce(
            cache_from(ctx), limit, grace=maintenance.parse_duration(grace), dry_run=dry_run
        )
        echo_eviction(eviction, as_json)
        return
    max_age = maintenance.parse_duration(older_than) if older_than is not None else None
    report = maintenance.gc(
        cache_from(ctx),
        keep_last=keep_last,
        older_than=max_age,
        dry_run=dry_run,
        grace=maintenance.parse_duration(grace),
    )
    if as_json:
        echo_json(report.to_json())
        return
    remove, delete = ("would remove", "would delete") if dry_run else ("removed", "deleted")
    if keep_last is not None or max_age is not None:
        click.echo(
            f"{remove} {plural(len(report.runs), 'run')}, "
            f"{plural(len(report.steps), 'step entry', 'step entries')}, "
            f"{plural(len(report.artifacts), 'artifact record')}, "
            f"{plural(len(report.environments), 'environment record')}"
        )
    click.echo(
        f"{delete} {plural(report.objects, 'object')} ({human_bytes(report.object_bytes)}) "
        f"and {plural(report.temporary_files, 'temporary file')} "
        f"({human_bytes(report.temporary_bytes)})"
    )
    click.echo(
        f"kept {plural(report.kept_runs, 'run')}, "
        f"{plural(report.kept_steps, 'step entry', 'step entries')}, "
        f"{plural(report.kept_artifacts, 'artifact')}, {plural(report.kept_objects, 'object')}"
    )
    if report.spared_objects:
        note(
            f"spared {plural(report.spared_objects, 'unreferenced object')} "
            f"({human_bytes(report.spared_bytes)}) younger than {grace}: a running pipeline "
            "may be about to reference them (--grace 0 includes them)"
        )


def _gc_remote(
    ctx: click.Context,
    grace: str,
    dry_run: bool,
    as_json: bool,
    keep_last: int | None,
    older_than: str | None,
) -> None:
    from .. import maintenance
    from ..maintenance.remote_sync import gc_remote

    if keep_last is not None or older_than is not None:
        raise UsageError(
            "--keep-last and --older-than prune local run records; with --remote, gc deletes "
            "only remote objects no remote entry names (drop those options)"
        )
    report = gc_remote(cache_from(ctx), grace=maintenance.parse_duration(grace), dry_run=dry_run)
    if as_json:
        echo_json(report.to_json())
        return
    delete = "would delete" if dry_run else "deleted"
    click.echo(
        f"{delete} {plural(report.removed, 'remote object')} "
        f"({human_bytes(report.removed_bytes)}) of {report.objects}; "
        f"{plural(report.entries, 'entry', 'entries')} kept"
    )
    if report.kept_young:
        note(
            f"spared {plural(report.kept_young, 'unreferenced object')} younger than {grace}: "
            "an upload may be about to name them (--grace 0 includes them)"
        )


# --- verify ------------------------------------------------------------------------------------


@cache_group.command("verify")
@click.option("--repair", is_flag=True, help="Drop the entries that depend on damage.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def verify_command(ctx: click.Context, repair: bool, as_json: bool) -> None:
    """Re-hash every object and check every artifact and step entry.

    Exits 1 naming what is missing or corrupt. With --repair, drops the artifact
    records and step entries that depend on it and deletes the damaged files, so
    the next run re-executes exactly those steps; exits 0 when all is repaired.
    """
    from .. import maintenance  # at run time: --help stays fast

    report = maintenance.verify(cache_from(ctx), repair=repair)
    if as_json:
        echo_json(report.to_json())
    else:
        _print_verify(report)
    if report.ok:
        return
    missing = [d.object_id for d in report.objects if d.problem == "missing"]
    corrupt = [d.object_id for d in report.objects if d.problem == "corrupt"]
    named = ", ".join((corrupt + missing)[:3]) + (" ..." if len(report.objects) > 3 else "")
    facts = f"{len(corrupt)} corrupt and {len(missing)} missing objects"
    if named:
        facts += f" ({named})"
    facts += (
        f", {plural(len(report.artifacts), 'damaged artifact record')}, "
        f"{plural(len(report.steps), 'damaged step entry', 'damaged step entries')}"
    )
    if report.runs:
        facts += f", {plural(len(report.runs), 'damaged run record')}"
    note(
        f"error: verify found {facts}; run 'zencache cache verify --repair' to drop what "
        "depends on them (the next run recomputes it)"
    )
    ctx.exit(1)


def _print_verify(report: maintenance.VerifyReport) -> None:
    if report.salvage is not None:
        copied = sum(report.salvage.entries.values())
        skipped = report.salvage.damaged_pages
        click.echo(
            f"the index was damaged; copied the {plural(copied, 'entry', 'entries')} still "
            "readable into a new index"
            + (f", past {plural(skipped, 'damaged page')}" if skipped else "")
            + f" (the damaged one is at {report.salvage.moved_to}; delete it when you "
            "like); lost entries rerun"
        )
    click.echo(
        f"checked {plural(report.objects_checked, 'object')} "
        f"({human_bytes(report.bytes_checked)}), "
        f"{plural(report.artifacts_checked, 'artifact')}, "
        f"{plural(report.steps_checked, 'step entry', 'step entries')} "
        f"in {human_duration(report.seconds)}"
    )
    if report.remote_objects:
        click.echo(
            f"{plural(report.remote_objects, 'object')} of remote hits not fetched yet: the "
            "remote cache holds them (loading an output fetches them; 'zencache pull' does now)"
        )
    for damaged in report.objects:
        users = ", ".join(_step_label(s) for s in damaged.steps) or "no step entry"
        click.echo(
            f"{damaged.problem} object {damaged.object_id}: "
            f"{plural(len(damaged.artifacts), 'artifact')}; steps: {users}"
        )
    for artifact in report.artifacts:
        click.echo(f"damaged artifact {artifact.content_id}: {'; '.join(artifact.reasons)}")
    for step in report.steps:
        click.echo(f"damaged step entry {_step_label(step.entry)}: {'; '.join(step.reasons)}")
    for run_id in report.runs:
        click.echo(f"damaged run record {run_id}: it cannot be decoded")
    if not report.damaged:
        click.echo("no damage found")
    elif report.repair is not None:
        fixed = report.repair
        click.echo(
            f"repaired: dropped {plural(len(fixed.artifacts), 'artifact record')} and "
            f"{plural(len(fixed.steps), 'step entry', 'step entries')}, deleted "
            f"{plural(len(fixed.objects), 'damaged object file')}"
            + (f", dropped {plural(len(fixed.runs), 'run record')}" if fixed.runs else "")
        )
        if fixed.steps:
            names = ", ".join(_step_label(s) for s in fixed.steps)
            click.echo(f"the next run re-executes: {names}")


# --- clear -------------------------------------------------------------------------------------


@cache_group.command("clear")
@click.argument("step", required=False)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def clear_command(ctx: click.Context, step: str | None, yes: bool) -> None:
    """Remove every entry and object, or the step entries of one STEP.

    Clearing one step keeps its objects for 'zencache cache gc' to delete and
    keeps the run records as history; its next run re-executes it. Asks for
    confirmation on a terminal; elsewhere pass --yes.
    """
    from .. import maintenance  # at run time: --help stays fast

    cache = cache_from(ctx)
    if step is not None:
        entries = maintenance.ls(cache, step)
        if not entries:
            maintenance.clear(cache, step)  # raises the error that lists the known steps
        what = f"the {plural(len(entries), 'step entry', 'step entries')} of {step!r}"
    else:
        s = maintenance.stats(cache)
        what = (
            f"everything ({plural(s.step_entries, 'step entry', 'step entries')}, "
            f"{plural(s.runs, 'run')}, {plural(s.objects, 'object')}, "
            f"{human_bytes(s.object_bytes)})"
        )
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"refusing to clear {what} from {cache.path} without confirmation (stdin is "
                "not a terminal); pass --yes"
            )
        if not click.confirm(f"Remove {what} from {cache.path}?", default=False, err=True):
            note("nothing removed")
            ctx.exit(1)
    report = maintenance.clear(cache, step)
    if step is None:
        click.echo(
            f"removed {plural(len(report.steps), 'step entry', 'step entries')}, "
            f"{plural(report.artifacts, 'artifact record')}, {plural(report.runs, 'run')}, "
            f"{plural(report.objects, 'object')} ({human_bytes(report.object_bytes)})"
        )
        return
    click.echo(
        f"removed {plural(len(report.steps), 'step entry', 'step entries')} of {step!r}, "
        f"{plural(len(report.latest), 'latest pointer')} and "
        f"{plural(report.artifacts, 'artifact record')} no other entry names"
    )
    note("their objects stay until 'zencache cache gc' deletes them")
