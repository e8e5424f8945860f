"""`zencache report RUN -o report.html`: one self-contained HTML page about a run.

The page loads nothing (no network, no external file, script, style, font or
image): the step graph is inline SVG coloured by status, the timeline is inline
SVG, styles and the small search script are inline, so it opens from an e-mail
attachment or a CI artifact. Per step: its cache reason, parameters, code
fingerprint parts, environment, lineage, and previews of its outputs as `show`
gives them. A 1,000-step run stays readable (steps collapse, a search box
filters them) and small (~1 KiB a step).

The results layer gives the data (views, summaries, diffs); this module, like
the rest of the CLI, turns it into words and markup. Writes nothing itself.
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass
from typing import Any

from ..core.runs import Run, StepResult
from ..maintenance import provenance
from ..results import summary as summaries
from ..results.diff import RunDiff, StepDiff, diff_runs
from ..storage.records import EnvRecord
from .results_commands import describe_code

STATUSES = ("executed", "cached", "failed", "skipped", "interrupted")
_NODE_W, _NODE_H, _GAP_X, _GAP_Y = 150, 26, 18, 30
_BAR_H = 14
# Outputs larger than this are described by their record only (not loaded) in a report.
MAX_PREVIEW_BYTES = 16 << 20


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True, slots=True)
class _Node:
    index: int
    step: StepResult
    parents: tuple[int, ...]
    depth: int


def build_report(cache: Any, run: Run, other: Run | None = None, *, previews: bool = True) -> str:
    """The page, as text. `other`: highlight what changed from that run to this one."""
    nodes = _graph(run)
    previous = other if other is not None else _previous_run(cache, run)
    reasons = _reasons(run, previous, diff_runs(previous, run, metrics=False) if previous else None)
    changes = diff_runs(other, run) if other is not None else None
    changed = {s.name for s in changes.steps if s.content_changed} if changes else set()
    envs: dict[str, EnvRecord | None] = {}
    run_env = run.environment
    if run_env is not None:
        envs[run_env.env_id] = run_env
    parts = [
        _HEAD.replace("{title}", _e(f"zencache run {run.id} of {run.pipeline}")),
        _header(run, run_env),
    ]
    if changes is not None:
        parts.append(_diff_section(changes))
    parts.append(_graph_svg(nodes, changed))
    parts.append(_timeline_svg(run))
    parts.append(
        '<section><h2>Steps</h2><div class="tools">'
        '<input id="q" type="search" placeholder="Filter steps by name, status or text" '
        'aria-label="filter steps">'
        '<button type="button" id="open">expand all</button>'
        '<button type="button" id="close">collapse all</button>'
        + (
            '<label><input type="checkbox" id="only-changed"> only changed</label>'
            if changes
            else ""
        )
        + '<span id="count"></span></div>'
    )
    producers: dict[str, tuple[int, str, str]] = {}
    code_seen: dict[str, tuple[int, str]] = {}  # fingerprint -> first step showing its parts
    for node in nodes:
        parts.append(
            _step_section(
                cache,
                node,
                reasons.get(node.step.name, ""),
                producers,
                code_seen,
                envs,
                run_env,
                node.step.name in changed,
                previews,
            )
        )
        for output, content_id in node.step.outputs.items():
            producers.setdefault(content_id, (node.index, node.step.name, output))
    parts.append("</section>")
    parts.append(_environment_section(run_env))
    parts.append(_FOOT)
    return "".join(parts)


# --- the graph ---------------------------------------------------------------------------------


def _graph(run: Run) -> list[_Node]:
    """Steps in run order with their upstream steps, found by the content ids of
    their inputs (a failed or skipped step has no entry, so no known inputs)."""
    made_by: dict[str, int] = {}
    nodes: list[_Node] = []
    for index, step in enumerate(run.steps.values()):
        parents = tuple(sorted({made_by[cid] for cid in step.inputs.values() if cid in made_by}))
        depth = 1 + max((nodes[p].depth for p in parents), default=-1)
        nodes.append(_Node(index, step, parents, depth))
        for content_id in step.outputs.values():
            made_by.setdefault(content_id, index)
    return nodes


def _graph_svg(nodes: list[_Node], changed: set[str]) -> str:
    if not nodes:
        return "<section><h2>Graph</h2><p>No steps.</p></section>"
    rows: dict[int, list[_Node]] = {}
    for node in nodes:
        rows.setdefault(node.depth, []).append(node)
    where: dict[int, tuple[int, int]] = {}
    for depth, row in rows.items():
        for column, node in enumerate(row):
            where[node.index] = (column * (_NODE_W + _GAP_X) + 4, depth * (_NODE_H + _GAP_Y) + 4)
    width = max(x for x, _ in where.values()) + _NODE_W + _GAP_X + 8
    height = max(y for _, y in where.values()) + _NODE_H + 8
    edges = []
    for node in nodes:
        x2, y2 = where[node.index]
        for parent in node.parents:
            x1, y1 = where[parent]
            a, b = x1 + _NODE_W // 2, x2 + _NODE_W // 2
            if nodes[parent].depth + 1 < node.depth and a == b:
                # Past the rows between, beside their boxes rather than through them.
                side = a + _NODE_W // 2 + _GAP_X // 2
                edges.append(
                    f'<path d="M{x1 + _NODE_W} {y1 + _NODE_H // 2}C{side} {y1 + _NODE_H // 2} '
                    f'{side} {y2 + _NODE_H // 2} {x2 + _NODE_W} {y2 + _NODE_H // 2}"/>'
                )
                continue
            edges.append(
                f'<path d="M{a} {y1 + _NODE_H}C{a} {y1 + _NODE_H + 14} {b} {y2 - 14} {b} {y2}"/>'
            )
    boxes = []
    for node in nodes:
        x, y = where[node.index]
        name = node.step.name
        label = name if len(name) <= 20 else name[:19] + "…"
        extra = " changed" if name in changed else ""
        boxes.append(
            f'<a href="#s{node.index}"><g class="node {_e(node.step.status)}{extra}" '
            f'data-step="{_e(name)}" data-status="{_e(node.step.status)}" '
            f'transform="translate({x},{y})"><title>{_e(name)}: {_e(node.step.status)}</title>'
            f'<rect width="{_NODE_W}" height="{_NODE_H}" rx="5"/>'
            f'<text x="{_NODE_W // 2}" y="17">{_e(label)}</text></g></a>'
        )
    legend = "".join(
        f'<span class="chip {s}">{s}</span>'
        for s in STATUSES
        if any(n.step.status == s for n in nodes)
    )
    return (
        f'<section><h2>Graph</h2><p class="legend">{legend}'
        + (' <span class="chip changed-chip">changed</span>' if changed else "")
        + '</p><div class="scroll graph">'
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="step graph">'
        f'<g class="edges">{"".join(edges)}</g>{"".join(boxes)}</svg></div></section>'
    )


def _timeline_svg(run: Run) -> str:
    """Each step's duration as a bar, in run order, from the run's start (steps of a
    parallel executor overlap in truth: start times are not recorded)."""
    steps = list(run.steps.values())
    total = sum(s.duration for s in steps) or 1.0
    width = 900
    label_w = 180
    scale = (width - label_w - 70) / total
    bars = []
    offset = 0.0
    for index, step in enumerate(steps):
        y = index * (_BAR_H + 2)
        x = label_w + offset * scale
        w = max(step.duration * scale, 1.0)
        name = step.name if len(step.name) <= 26 else step.name[:25] + "…"
        bars.append(
            f'<g class="{_e(step.status)}" transform="translate(0,{y})">'
            f'<text x="{label_w - 6}" y="11">{_e(name)}</text>'
            f'<rect x="{x:.1f}" width="{w:.1f}" height="{_BAR_H}"/>'
            f'<text x="{x + w + 4:.1f}" y="11">{_e(_duration(step.duration))}</text></g>'
        )
        offset += step.duration
    height = len(steps) * (_BAR_H + 2) + 4
    return (
        "<section><h2>Timeline</h2>"
        f'<p class="muted">Step durations in run order ({_e(_duration(total))} of step time; '
        f"the run took {_e(_duration(run.duration))}).</p>"
        f'<div class="scroll timeline"><svg id="timeline" xmlns="http://www.w3.org/2000/svg" '
        f'width="{width}" height="{height}">{"".join(bars)}</svg></div></section>'
    )


# --- steps ---------------------------------------------------------------------------------


def _previous_run(cache: Any, run: Run) -> Run | None:
    """The run of the same pipeline just before `run`: what its reasons compare with."""
    for record in provenance.list_runs(cache, pipeline=run.pipeline):
        if record.run_id < run.id:
            return Run(record, run.cache)
    return None


def _reasons(run: Run, previous: Run | None, changes: RunDiff | None) -> dict[str, str]:
    by_name: dict[str, StepDiff] = {s.name: s for s in changes.steps} if changes else {}
    reasons = {}
    for name, step in run.steps.items():
        reasons[name] = _reason(run, step, previous, by_name.get(name))
    return reasons


def _reason(run: Run, step: StepResult, previous: Run | None, change: StepDiff | None) -> str:
    if step.status == "cached":
        made = step.run_id
        return f"cache hit (computed by run {made})" if made and made != run.id else "cache hit"
    if step.status == "failed":
        lines = step.error.strip().splitlines()
        return f"failed: {lines[-1]}" if lines else "failed"
    if step.status == "skipped":
        return "skipped: an upstream step failed"
    if step.status == "interrupted":
        return "interrupted"
    if previous is None:
        return "executed: first recorded run of this pipeline"
    if change is None or change.status_a is None:
        return f"executed: new step (not in run {previous.id})"
    said = [f"code changed: {describe_code(c)}" for c in change.code]
    said += [f"parameter {c.name}: {c.a} -> {c.b}" for c in change.params]
    said += [f"input {c.name}: content changed" for c in change.inputs]
    if said:
        return "executed: " + "; ".join(said)
    if change.key_a == change.key_b:
        return f"executed: same key as in run {previous.id} (cache=False, or its entry was removed)"
    return f"executed: key changed since run {previous.id}"


def _step_section(
    cache: Any,
    node: _Node,
    reason: str,
    producers: dict[str, tuple[int, str, str]],
    code_seen: dict[str, tuple[int, str]],
    envs: dict[str, EnvRecord | None],
    run_env: EnvRecord | None,
    changed: bool,
    previews: bool,
) -> str:
    step = node.step
    entry = step.entry
    out = [
        f'<details class="step {_e(step.status)}{" changed" if changed else ""}" id="s{node.index}" '
        f'data-name="{_e(step.name)}" data-status="{_e(step.status)}">'
        f'<summary><span class="chip {_e(step.status)}">{_e(step.status)}</span> '
        f'<b>{_e(step.name)}</b> <span class="muted">{_e(_duration(step.duration))}</span>'
        + (' <span class="chip changed-chip">changed</span>' if changed else "")
        + f' <span class="reason">{_e(reason)}</span></summary><div class="body">'
    ]
    facts = [("step", step.step), ("key", step.key or "-")]
    if entry is not None:
        facts.append(("fingerprint", entry.fingerprint))
    out.append(_table(facts))
    if entry is not None:
        if entry.params:
            out.append("<h4>Parameters</h4>")
            out.append(_table([(n, p.get("repr", "")) for n, p in sorted(entry.params.items())]))
        first = code_seen.get(entry.fingerprint)
        if first is not None:
            # A 1,000-step chain of one function would repeat one table 1,000 times.
            out.append(
                f'<p class="muted">Code fingerprint parts: as <a href="#s{first[0]}">'
                f"{_e(first[1])}</a></p>"
            )
        elif entry.code_parts:
            code_seen[entry.fingerprint] = (node.index, step.name)
            out.append("<h4>Code fingerprint parts</h4>")
            out.append(_table(sorted(entry.code_parts.items()), code=True))
        if entry.untracked:
            out.append(
                '<p class="warn">Not tracked by the fingerprint: '
                + _e(", ".join(entry.untracked))
                + "</p>"
            )
        metrics = getattr(entry, "metrics", None)
        if metrics:
            out.append("<h4>Metrics</h4>")
            out.append(_table(sorted((str(k), v) for k, v in metrics.items())))
        out.append(_step_env(cache, entry.env_id, envs, run_env))
    if entry is not None and entry.inputs:
        out.append("<h4>Inputs (lineage)</h4><ul>")
        for name, content_id in sorted(entry.inputs.items()):
            made = producers.get(content_id)
            source = (
                f'<a href="#s{made[0]}">{_e(made[1])}.{_e(made[2])}</a>'
                if made is not None
                else "not made in this run"
            )
            out.append(
                f"<li><code>{_e(name)}</code> = <code>{_e(content_id)}</code> from {source}</li>"
            )
        out.append("</ul>")
    if step.outputs:
        out.append("<h4>Outputs</h4>")
        for name, content_id in step.outputs.items():
            out.append(f'<div class="output"><code>{_e(name)}</code> ')
            out.append(_preview(cache, content_id, previews))
            out.append("</div>")
    if step.error:
        out.append(f'<h4>Error</h4><pre class="error">{_e(step.error.strip()[-4000:])}</pre>')
    out.append("</div></details>")
    return "".join(out)


def _preview(cache: Any, content_id: str, previews: bool) -> str:
    record = cache.index.get_artifact(content_id)
    if record is None:
        return f'<code>{_e(content_id)}</code> <span class="warn">no longer in the cache</span>'
    if not previews or record.size > MAX_PREVIEW_BYTES:
        facts = {
            "content_id": record.content_id,
            "type": record.type_name.replace(":", "."),
            "size": record.size,
            "materializer": record.materializer,
            "kind": "object",
        }
        return f"<pre>{_e(chr(10).join(summaries.render(facts)))}</pre>"
    found = summaries.summarize(cache.store, record)
    return f"<pre>{_e(chr(10).join(summaries.render(found)))}</pre>"


def _step_env(
    cache: Any, env_id: str, envs: dict[str, EnvRecord | None], run_env: EnvRecord | None
) -> str:
    if not env_id:
        return ""
    if env_id not in envs:
        envs[env_id] = cache.index.get_env(env_id)
    env = envs[env_id]
    if env is None:
        return f'<p class="muted">environment {_e(env_id[:12])} (record removed)</p>'
    if run_env is not None and env.env_id == run_env.env_id:
        return ""  # the run's own, shown once at the end of the page
    text = f"Python {env.python} on {env.platform} ({env.machine}); env {env.env_id[:12]}"
    return f'<p class="warn">computed in another environment: {_e(text)}</p>'


def _table(rows: list[tuple[str, Any]], code: bool = False) -> str:
    cell = (lambda v: f"<code>{_e(v)}</code>") if code else _e
    body = "".join(f"<tr><th>{_e(k)}</th><td>{cell(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


# --- header, diff, environment --------------------------------------------------------------


def _header(run: Run, env: EnvRecord | None) -> str:
    counts: dict[str, int] = {}
    for step in run.steps.values():
        counts[step.status] = counts.get(step.status, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no steps"
    facts = [
        ("run", run.id),
        ("pipeline", run.pipeline + (f" (target {run.target})" if run.target else "")),
        ("status", run.status),
        ("started", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(run.started))),
        ("took", _duration(run.duration)),
        ("steps", summary),
        ("parameters", ", ".join(f"{k}={v}" for k, v in run.parameters.items()) or "-"),
    ]
    if env is not None:
        facts.append(
            ("environment", f"Python {env.python} ({env.implementation}) on {env.platform}")
        )
    return (
        f"<header><h1>Run <code>{_e(run.id)}</code> of <b>{_e(run.pipeline)}</b> "
        f'<span class="chip run-{_e(run.status)}">{_e(run.status)}</span></h1>'
        f"{_table(facts)}</header>"
    )


def _diff_section(changes: RunDiff) -> str:
    out = [f'<section class="diff"><h2>Changes since run <code>{_e(changes.a.id)}</code></h2>']
    if changes.params:
        out.append(
            '<h4>Parameters</h4><table class="grid"><tr><th>name</th><th>before</th><th>now</th></tr>'
        )
        out.extend(
            f"<tr><td>{_e(c.name)}</td><td>{_e(c.a)}</td><td>{_e(c.b)}</td></tr>"
            for c in changes.params
        )
        out.append("</table>")
    else:
        out.append("<p>Parameters: no change.</p>")
    steps = changes.changed_steps
    out.append(f"<h4>Steps that changed ({len(steps)} of {len(changes.steps)})</h4>")
    if steps:
        out.append(
            '<table class="grid"><tr><th>step</th><th>before</th><th>now</th><th>what</th></tr>'
        )
        for s in steps[:500]:
            what = [f"code: {describe_code(c)}" for c in s.code]
            what += [f"parameter {c.name}: {c.a} -> {c.b}" for c in s.params]
            what += [f"input {c.name} changed" for c in s.inputs]
            what += [f"output {c.name} changed" for c in s.outputs]
            if not what and s.status_a and s.status_b and s.status_a != s.status_b:
                what.append(f"same key: {s.status_a} before, {s.status_b} now")
            out.append(
                f"<tr><td>{_e(s.name)}</td><td>{_e(s.status_a or '(absent)')}</td>"
                f"<td>{_e(s.status_b or '(absent)')}</td><td>{_e('; '.join(what) or '-')}</td></tr>"
            )
        out.append("</table>")
        if len(steps) > 500:
            out.append(f'<p class="muted">and {len(steps) - 500} more.</p>')
    metrics = [m for m in changes.metrics if m.changed]
    if metrics:
        out.append(
            '<h4>Metrics</h4><table class="grid"><tr><th>step</th><th>name</th>'
            "<th>before</th><th>now</th><th>change</th></tr>"
        )
        for m in metrics[:500]:
            delta = "-" if m.delta is None else f"{m.delta:+.6g}"
            out.append(
                f"<tr><td>{_e(m.step)}</td><td>{_e(m.name)}</td><td>{_e(_num(m.a))}</td>"
                f"<td>{_e(_num(m.b))}</td><td>{_e(delta)}</td></tr>"
            )
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def _environment_section(env: EnvRecord | None) -> str:
    if env is None:
        return ""
    rows = [
        ("python", f"{env.python} ({env.implementation})"),
        ("platform", f"{env.platform} ({env.machine})"),
        ("environment id", env.env_id),
    ]
    dists = ", ".join(f"{n}=={v}" for n, v in sorted(env.distributions.items()))
    return (
        "<section><h2>Environment</h2>"
        f"{_table(rows)}<details><summary>{len(env.distributions)} installed distributions"
        f'</summary><p class="dists">{_e(dists)}</p></details></section>'
    )


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _duration(seconds: float) -> str:
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


_HEAD = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:">
<link rel="icon" href="data:,">
<title>{title}</title>
<style>
:root{--executed:#2f6fdb;--cached:#2e9d57;--failed:#d63b3b;--skipped:#8a8f98;--interrupted:#e08a1e;--changed:#b35cf0}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1200px;padding:16px 24px;color:#1d2330}
h1{font-size:20px;margin:8px 0}h2{font-size:16px;margin:24px 0 8px;border-bottom:1px solid #e3e6eb;padding-bottom:4px}
h4{margin:10px 0 4px;font-size:13px}code,pre{font:12px ui-monospace,SFMono-Regular,Menlo,monospace}
pre{background:#f5f6f8;padding:6px 8px;border-radius:4px;overflow:auto;max-height:260px;margin:4px 0}
.muted{color:#69707d}.warn{color:#a1520c}.error{color:#9c1d1d}
table.kv th{text-align:left;font-weight:600;padding:1px 12px 1px 0;vertical-align:top;white-space:nowrap}
table.kv td{padding:1px 0;word-break:break-all}table.grid{border-collapse:collapse}
table.grid td,table.grid th{border:1px solid #e3e6eb;padding:2px 8px;text-align:left}
.chip{display:inline-block;padding:0 7px;border-radius:9px;color:#fff;font-size:12px;background:#69707d}
.chip.executed{background:var(--executed)}.chip.cached{background:var(--cached)}.chip.failed{background:var(--failed)}
.chip.skipped{background:var(--skipped)}.chip.interrupted{background:var(--interrupted)}.changed-chip{background:var(--changed)}
.chip.run-completed{background:var(--cached)}.chip.run-failed{background:var(--failed)}.chip.run-interrupted{background:var(--interrupted)}
.scroll{overflow:auto;border:1px solid #e3e6eb;border-radius:4px;max-height:460px}
.node rect{fill:#fff;stroke-width:2}.node text{font-size:12px;text-anchor:middle;fill:#1d2330}
.node.executed rect{stroke:var(--executed);fill:#e6efff}.node.cached rect{stroke:var(--cached);fill:#e4f5ea}
.node.failed rect{stroke:var(--failed);fill:#fde8e8}.node.skipped rect{stroke:var(--skipped);fill:#f0f1f3}
.node.interrupted rect{stroke:var(--interrupted);fill:#fdf0e0}.node.changed rect{stroke:var(--changed);stroke-width:4}
.node.hit rect{stroke:#000;stroke-width:4}.edges path{fill:none;stroke:#9aa1ad;stroke-width:1.4}
#timeline text{font-size:11px;fill:#1d2330}#timeline text:first-child{text-anchor:end}#timeline .executed rect{fill:var(--executed)}#timeline .cached rect{fill:var(--cached)}
#timeline .failed rect{fill:var(--failed)}#timeline .skipped rect{fill:var(--skipped)}#timeline .interrupted rect{fill:var(--interrupted)}
details.step{border:1px solid #e3e6eb;border-left:4px solid var(--skipped);border-radius:4px;margin:4px 0}
details.step.executed{border-left-color:var(--executed)}details.step.cached{border-left-color:var(--cached)}
details.step.failed{border-left-color:var(--failed)}details.step.interrupted{border-left-color:var(--interrupted)}
details.step.changed{background:#faf3ff}details.step summary{cursor:pointer;padding:4px 8px}
details.step .body{padding:0 12px 8px}.reason{color:#4a5160;font-size:13px}.output{margin:6px 0}
.tools{display:flex;gap:8px;align-items:center;margin:6px 0}#q{flex:1;padding:4px 6px;font-size:14px}
.legend .chip{margin-right:4px}.dists{font-size:12px}
</style></head><body>
"""

_FOOT = """<footer class="muted"><p>Written by zencache. This page is self-contained: it loads nothing.</p></footer>
<script>
"use strict";
(function () {
  var steps = Array.prototype.slice.call(document.querySelectorAll("details.step"));
  var nodes = Array.prototype.slice.call(document.querySelectorAll("#graph .node"));
  var q = document.getElementById("q");
  var count = document.getElementById("count");
  var onlyChanged = document.getElementById("only-changed");
  var texts = steps.map(function (s) { return s.textContent.toLowerCase(); });
  function filter() {
    var words = q.value.toLowerCase().split(/\\s+/).filter(Boolean);
    var changedOnly = onlyChanged !== null && onlyChanged.checked;
    var shown = 0;
    steps.forEach(function (s, i) {
      var ok = words.every(function (w) { return texts[i].indexOf(w) >= 0; }) &&
        (!changedOnly || s.classList.contains("changed"));
      s.style.display = ok ? "" : "none";
      if (ok) { shown += 1; }
      if (nodes[i]) { nodes[i].classList.toggle("hit", ok && words.length > 0); }
    });
    count.textContent = shown + " of " + steps.length + " steps";
  }
  q.addEventListener("input", filter);
  if (onlyChanged !== null) { onlyChanged.addEventListener("change", filter); }
  document.getElementById("open").addEventListener("click", function () {
    steps.forEach(function (s) { if (s.style.display !== "none") { s.open = true; } });
  });
  document.getElementById("close").addEventListener("click", function () {
    steps.forEach(function (s) { s.open = false; });
  });
  window.addEventListener("hashchange", function () {
    var target = document.getElementById(location.hash.slice(1));
    if (target && target.tagName === "DETAILS") { target.open = true; }
  });
  filter();
})();
</script>
</body></html>
"""
