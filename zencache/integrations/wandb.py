"""Weights & Biases: one W&B run per pipeline run, each step a section of it.

`run(hooks=[WandbHook(project=...)])`, or `hooks = ["wandb"]` under
`[tool.zencache]` (W&B's own settings apply then: WANDB_PROJECT, WANDB_MODE, ...).
The mapping is MLflow's (mlflow.py), in W&B's terms: the pipeline's parameters
and each step's (under the step's name) go to the run's config; a step's metrics
are logged as `STEP/NAME` (W&B draws each `STEP/` prefix as a section of the
run's page; a series logged with step numbers is plotted against `STEP/step`)
and its final values, with `STEP/zencache.status` (executed, cached, failed,
skipped), its cache key, output content ids and the zencache run that produced
a cached step's entry, go to the run's summary. Cached steps replay the metrics
of the execution that made their entry, under the same names. Works in W&B's
offline mode (`mode="offline"` or WANDB_MODE=offline): `wandb sync` uploads it
later. Needs `pip install 'zencache[wandb]'`.
"""

from __future__ import annotations

from typing import Any

from ..errors import UsageError


def _import_wandb() -> Any:
    try:
        import wandb
    except ImportError as exc:
        raise UsageError(
            f"the W&B hook needs wandb ({exc}); install it with pip install 'zencache[wandb]'"
        ) from exc
    return wandb


class WandbHook:
    """Log every pipeline run to Weights & Biases, one W&B run per pipeline run.

    `project`: default WANDB_PROJECT, else the pipeline's name; `mode`: "online",
    "offline" or "disabled" (default: W&B's, i.e. WANDB_MODE); `dir`: where W&B
    writes its files; other keyword arguments go to `wandb.init` as they are.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        entity: str | None = None,
        mode: str | None = None,
        dir: str | None = None,
        group: str | None = None,
        job_type: str = "pipeline",
        tags: tuple[str, ...] | list[str] = (),
        **init_kwargs: Any,
    ) -> None:
        self.wandb = _import_wandb()
        self.project = project
        self.entity = entity
        self.mode = mode
        self.dir = dir
        self.group = group
        self.job_type = job_type
        self.tags = tuple(tags)
        self.init_kwargs = init_kwargs
        self._runs: dict[str, Any] = {}  # zencache run id -> wandb Run
        self._series: dict[str, set[str]] = {}  # run id -> step metrics already defined
        self._params: dict[str, dict[str, Any]] = {}  # run id -> step -> parameters

    def __repr__(self) -> str:
        return f"WandbHook(project={self.project!r}, mode={self.mode!r})"

    def wandb_run(self, run_id: str) -> Any:
        """The W&B run of a zencache run still in progress (None after it ended)."""
        return self._runs.get(run_id)

    def on_run_start(
        self, run_id: str, pipeline: str, params: dict[str, str], target: str = "", **_: Any
    ) -> None:
        import os

        kwargs: dict[str, Any] = {
            "project": self.project or os.environ.get("WANDB_PROJECT") or pipeline,
            "name": f"{pipeline} {run_id}",
            "job_type": self.job_type,
            "tags": [*self.tags, "zencache"],
            "config": {"zencache": {"run_id": run_id, "pipeline": pipeline, "target": target}},
            "reinit": "create_new",  # several pipeline runs in one process, each its own
        }
        for name in ("entity", "mode", "dir", "group"):
            if getattr(self, name) is not None:
                kwargs[name] = getattr(self, name)
        kwargs.update(self.init_kwargs)
        run = self.wandb.init(**kwargs)
        if params:
            run.config.update({"params": dict(params)}, allow_val_change=True)
        self._runs[run_id] = run
        self._series[run_id] = set()
        self._params[run_id] = {}

    def on_step_end(
        self,
        run_id: str,
        step: str,
        status: str,
        key: str,
        duration: float,
        params: dict[str, Any],
        metrics: dict[str, float],
        outputs: dict[str, str],
        metric_history: dict[str, list[tuple[float, int | None]]] | None = None,
        metadata: dict[str, Any] | None = None,
        source: str | None = None,
        produced_by: str = "",
        error: str = "",
        **_: Any,
    ) -> None:
        run = self._runs.get(run_id)
        if run is None:
            return  # on_run_start failed (reported)
        if params:  # W&B replaces a top-level key whole: the steps so far, and this one
            steps = self._params[run_id]
            steps[step] = _config(params)
            run.config.update({"steps": dict(steps)}, allow_val_change=True)
        history = metric_history or {}
        defined = self._series[run_id]
        for name, value in metrics.items():
            series = history.get(name)
            if not series:
                run.log({f"{step}/{name}": value})
                continue
            axis = f"{step}/step"
            if f"{step}/{name}" not in defined:
                run.define_metric(f"{step}/{name}", step_metric=axis)
                defined.add(f"{step}/{name}")
            for position, (point, number) in enumerate(series):
                run.log({f"{step}/{name}": point, axis: position if number is None else number})
        summary = {
            f"{step}/zencache.status": status,
            f"{step}/zencache.key": key,
            f"{step}/zencache.duration": duration,
            **{f"{step}/{name}": value for name, value in metrics.items()},
            **{f"{step}/zencache.output.{n}": cid for n, cid in outputs.items()},
            **{f"{step}/zencache.metadata.{k}": v for k, v in (metadata or {}).items()},
        }
        if source:
            summary[f"{step}/zencache.source"] = source
        if produced_by:
            summary[f"{step}/zencache.produced_by"] = produced_by
        if error:
            summary[f"{step}/zencache.error"] = error.strip().splitlines()[-1] if error else ""
        run.summary.update(summary)

    def on_run_end(self, run_id: str, status: str, steps: dict[str, str], **_: Any) -> None:
        run = self._runs.pop(run_id, None)
        self._series.pop(run_id, None)
        self._params.pop(run_id, None)
        if run is None:
            return
        counts: dict[str, int] = {}
        for step_status in steps.values():
            counts[step_status] = counts.get(step_status, 0) + 1
        run.summary.update(
            {"zencache.status": status, **{f"zencache.steps.{k}": n for k, n in counts.items()}}
        )
        run.finish(exit_code=0 if status == "completed" else 1)


def _config(params: dict[str, Any]) -> dict[str, Any]:
    """Parameters as W&B config values: JSON scalars as they are, others by repr."""
    return {
        name: value if isinstance(value, str | int | float | bool) or value is None else repr(value)
        for name, value in params.items()
    }
