"""MLflow: one MLflow run per pipeline run, a nested run per step, cached steps included.

`run(hooks=[MLflowHook(tracking_uri=..., experiment_name=...)])`, or `hooks =
["mlflow"]` under `[tool.zencache]` (then MLflow's own settings apply:
MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME). A step's nested run holds its
parameters, the metrics it logged (`zencache.log_metric`, with their series) and
tags: `zencache.status` (executed, cached, failed, skipped), the zencache run id,
the step's cache key and output content ids. A cached step gets the metrics of
the execution that made its cache entry, under the same names, and tags naming
that execution (`zencache.produced_by`: its zencache run id;
`zencache.produced_by.mlflow_run_id`: its MLflow run, when this experiment has it).
The client API is used throughout (no global active run), except around a step
executed in this process when `autolog=True`, where the step's run is made
MLflow's active run and `mlflow.autolog()` is on. Needs `pip install 'zencache[mlflow]'`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import UsageError

_STATUS = {
    "executed": "FINISHED",
    "cached": "FINISHED",
    "failed": "FAILED",
    "skipped": "KILLED",
    "completed": "FINISHED",
    "interrupted": "KILLED",
}
_UNSAFE = re.compile(r"[^\w\-./ :]")  # what MLflow refuses in metric, param and tag names


def _import_mlflow() -> Any:
    try:
        import mlflow
    except ImportError as exc:
        raise UsageError(
            f"the MLflow hook needs mlflow ({exc}); install it with pip install 'zencache[mlflow]'"
        ) from exc
    return mlflow


@dataclass(slots=True)
class _RunState:
    experiment_id: str
    parent: str  # the pipeline run's MLflow run id
    steps: dict[str, str] = field(default_factory=dict)  # step name -> MLflow run id
    autologging: str = ""  # the step whose run is MLflow's active run (autolog)
    previous_uri: str | None = None


class MLflowHook:
    """Log every pipeline run to MLflow, one nested run per step.

    `tracking_uri`: where (default: MLflow's, i.e. MLFLOW_TRACKING_URI);
    `experiment_name`: default MLFLOW_EXPERIMENT_NAME, else the pipeline's name;
    `autolog`: turn on `mlflow.autolog()` around steps executed in this process
    (the local executor; worker processes log nothing by themselves);
    `summary`: also log each step's metrics on the pipeline's run, as `STEP/NAME`.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
        *,
        autolog: bool = False,
        summary: bool = True,
    ) -> None:
        self.mlflow = _import_mlflow()
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.autolog = autolog
        self.summary = summary
        self._client: Any = None
        self._runs: dict[str, _RunState] = {}  # by zencache run id
        self._executed: dict[str, str] = {}  # cache key -> the MLflow run of its execution

    def __repr__(self) -> str:
        return f"MLflowHook(tracking_uri={self.tracking_uri!r}, experiment_name={self.experiment_name!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def mlflow_run_id(self, run_id: str, step: str | None = None) -> str | None:
        """The MLflow run of a zencache run (or of one of its steps) still in progress."""
        state = self._runs.get(run_id)
        if state is None:
            return None
        return state.parent if step is None else state.steps.get(step)

    # --- hooks ------------------------------------------------------------------------------

    def on_run_start(
        self, run_id: str, pipeline: str, params: dict[str, str], target: str = "", **_: Any
    ) -> None:
        import os

        client = self.client
        name = self.experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or pipeline
        experiment = client.get_experiment_by_name(name)
        experiment_id = (
            experiment.experiment_id if experiment is not None else client.create_experiment(name)
        )
        tags = {
            "zencache.run_id": run_id,
            "zencache.pipeline": pipeline,
            "zencache.kind": "pipeline",
        }
        if target:
            tags["zencache.target"] = target
        parent = client.create_run(experiment_id, tags=tags, run_name=f"{pipeline} {run_id}")
        state = self._runs[run_id] = _RunState(experiment_id, parent.info.run_id)
        if params:
            self._log(state.parent, params=_params(params))

    def on_step_start(
        self,
        run_id: str,
        pipeline: str,
        step: str,
        key: str,
        cached: bool,
        step_identity: str = "",
        **_: Any,
    ) -> None:
        state = self._runs.get(run_id)
        if state is None or cached:
            # on_run_start failed (reported): nothing to nest under. A cached step's run
            # is made at its end, with all its tags: one MLflow call less (each is a
            # transaction of the tracking store).
            return
        child = self._child(state, run_id, pipeline, step, key, step_identity)
        if self.autolog:
            self._start_autolog(state, step, child)

    def on_step_end(
        self,
        run_id: str,
        pipeline: str,
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
        step_identity: str = "",
        **_: Any,
    ) -> None:
        state = self._runs.get(run_id)
        if state is None:
            return
        if state.autologging == step:
            self._stop_autolog(state)
        child = state.steps.pop(step, None)
        tags = {
            "zencache.status": status,
            "zencache.duration": f"{duration:.6f}",
            **{f"zencache.output.{_name(n)}": cid for n, cid in outputs.items()},
            **{f"zencache.metadata.{_name(k)}": _text(v) for k, v in (metadata or {}).items()},
        }
        if source:
            tags["zencache.source"] = source
        if produced_by:
            tags["zencache.produced_by"] = produced_by
        if status == "executed" and child is not None:
            self._executed[key] = child
        if status == "cached":
            producer = self._producer(state, key)
            if producer:
                tags["zencache.produced_by.mlflow_run_id"] = producer
            tags["mlflow.note.content"] = (
                f"Cached by zencache: replayed from the cache entry made by zencache run "
                f"{produced_by or '(unknown)'}" + (f" (MLflow run {producer})" if producer else "")
            )
        if error:
            tags["zencache.error"] = error.strip().splitlines()[-1] if error.strip() else error
        if child is None:  # not started: cached, skipped (or its start failed)
            child = self._child(state, run_id, pipeline, step, key, step_identity, tags)
            state.steps.pop(step, None)
            tags = {}
        self._log(
            child,
            metrics=_metrics(metrics, metric_history or {}),
            params=_params({n: _value_text(v) for n, v in params.items()}),
            tags=tags,
        )
        self.client.set_terminated(child, _STATUS.get(status, "FINISHED"))

    def on_run_end(
        self, run_id: str, status: str, metrics: dict[str, dict[str, float]], **_: Any
    ) -> None:
        state = self._runs.pop(run_id, None)
        if state is None:
            return
        if state.autologging:
            self._stop_autolog(state)
        for child in state.steps.values():  # started and never ended: an interrupted run
            self.client.set_terminated(child, "KILLED")
        if self.summary and metrics:
            now = _now()
            from mlflow.entities import Metric

            flat = [
                Metric(f"{_name(step)}/{_name(name)}", float(value), now, 0)
                for step, values in metrics.items()
                for name, value in values.items()
            ]
            self._log(state.parent, metrics=flat)
        self._log(state.parent, tags={"zencache.status": status})
        self.client.set_terminated(state.parent, _STATUS.get(status, "FINISHED"))

    # --- helpers ----------------------------------------------------------------------------

    def _child(
        self,
        state: _RunState,
        run_id: str,
        pipeline: str,
        step: str,
        key: str,
        identity: str,
        more: dict[str, str] | None = None,
    ) -> str:
        tags = {
            **(more or {}),
            "mlflow.parentRunId": state.parent,
            "zencache.run_id": run_id,
            "zencache.pipeline": pipeline,
            "zencache.step": step,
            "zencache.key": key,
            "zencache.kind": "step",
        }
        if identity:
            tags["zencache.step_identity"] = identity
        child = self.client.create_run(state.experiment_id, tags=tags, run_name=step)
        state.steps[step] = child.info.run_id
        return child.info.run_id

    def _producer(self, state: _RunState, key: str) -> str:
        """The MLflow run that logged the execution behind a cache entry: one this hook
        logged, else the newest in this experiment."""
        known = self._executed.get(key)
        if known is not None:
            return known
        if not re.fullmatch(r"[0-9a-zA-Z_.:-]*", key):
            return ""
        found = self.client.search_runs(
            [state.experiment_id],
            filter_string=f"tags.`zencache.key` = '{key}' and tags.`zencache.status` = 'executed'",
            max_results=1,
            order_by=["attributes.start_time DESC"],
        )
        producer = found[0].info.run_id if found else ""
        if producer:
            self._executed[key] = producer
        return producer

    def _log(
        self,
        run: str,
        *,
        metrics: list[Any] = (),  # type: ignore[assignment]
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Param, RunTag

        param_list = [Param(k, v) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, v) for k, v in (tags or {}).items()]
        metrics = list(metrics)
        # MLflow takes at most 1,000 entities a batch, metrics among them.
        while metrics or param_list or tag_list:
            batch_params, param_list = param_list[:100], param_list[100:]
            batch_tags, tag_list = tag_list[:100], tag_list[100:]
            room = 1000 - len(batch_params) - len(batch_tags)
            batch_metrics, metrics = metrics[:room], metrics[room:]
            self.client.log_batch(run, metrics=batch_metrics, params=batch_params, tags=batch_tags)

    def _start_autolog(self, state: _RunState, step: str, child: str) -> None:
        mlflow = self.mlflow
        if self.tracking_uri is not None:
            state.previous_uri = mlflow.get_tracking_uri()
            mlflow.set_tracking_uri(self.tracking_uri)
        mlflow.start_run(run_id=child)
        mlflow.autolog(silent=True)
        state.autologging = step

    def _stop_autolog(self, state: _RunState) -> None:
        mlflow = self.mlflow
        state.autologging = ""
        try:
            mlflow.autolog(disable=True, silent=True)
            if mlflow.active_run() is not None:
                mlflow.end_run()
        finally:
            if state.previous_uri is not None:
                mlflow.set_tracking_uri(state.previous_uri)
                state.previous_uri = None


def _now() -> int:
    return int(time.time() * 1000)


def _name(text: str) -> str:
    return _UNSAFE.sub("_", str(text))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _value_text(value: Any) -> str:
    """A parameter as MLflow shows it: strings as they are, other values by repr."""
    return value if isinstance(value, str) else repr(value)


def _params(params: dict[str, str]) -> dict[str, str]:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH

    return {
        _name(k): (v if len(v) <= MAX_PARAM_VAL_LENGTH else v[: MAX_PARAM_VAL_LENGTH - 3] + "...")
        for k, v in params.items()
    }


def _metrics(
    final: dict[str, float], history: dict[str, list[tuple[float, int | None]]]
) -> list[Any]:
    """A metric's series with its step numbers (their order where none was given), or
    its one value at step 0."""
    from mlflow.entities import Metric

    now = _now()
    out = []
    for name, value in final.items():
        series = history.get(name)
        if not series:
            out.append(Metric(_name(name), float(value), now, 0))
            continue
        for position, (point, number) in enumerate(series):
            out.append(
                Metric(_name(name), float(point), now, position if number is None else number)
            )
    return out
