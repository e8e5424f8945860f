"""ZenML's post-execution API of the seed's era, over zencache's results views.

    from zencache.repository import Repository

    pipeline = Repository().get_pipeline("digits_pipeline")
    run = pipeline.runs[-1]                     # runs are oldest first, as ZenML's were
    step = run.get_step("trainer")
    step.entrypoint_name                        # "svc_trainer": the function behind it
    model = step.output.read()                  # the one output; step.outputs["name"].read()

Today's ZenML spelling, `Client().get_pipeline(name).last_run`, is `.last_run`
here too. A facade: every object is a read-only view of zencache.results.
"""

from __future__ import annotations

import os
from typing import Any

from .core.runs import Run, StepResult
from .errors import UsageError
from .materializers.artifacts import load_artifact
from .results import Cache, find_step

__all__ = ["ArtifactView", "PipelineRunView", "PipelineView", "Repository", "StepView"]


class Repository:
    """The cache's recorded pipelines: `Repository().get_pipelines()`.

    `Repository()` finds the project's cache as the command line does;
    `Repository(path)` names a cache folder.
    """

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        self.cache = Cache(path)

    def __repr__(self) -> str:
        return f"Repository({str(self.cache.path)!r})"

    def get_pipelines(self) -> list[PipelineView]:
        """Every pipeline with a recorded run, by name."""
        return [PipelineView(self.cache, name) for name in self.cache.pipelines()]

    def get_pipeline(
        self, pipeline_name: str | None = None, *, pipeline: Any = None
    ) -> PipelineView | None:
        """The pipeline of that name, or None when no run of it is recorded (as in
        ZenML). `pipeline=` takes a pipeline function or instance instead of a name."""
        name = pipeline_name if pipeline_name is not None else _name_of(pipeline)
        if name is None:
            raise UsageError("get_pipeline needs a pipeline name, e.g. get_pipeline('digits')")
        if not self.cache.runs(pipeline=name, limit=1):
            return None
        return PipelineView(self.cache, name)

    def get_pipeline_names(self) -> list[str]:
        return self.cache.pipelines()


def _name_of(pipeline: Any) -> str | None:
    if pipeline is None:
        return None
    if isinstance(pipeline, str):
        return pipeline
    for attribute in ("name", "pipeline_name", "__name__"):
        value = getattr(pipeline, attribute, None)
        if isinstance(value, str):
            return value
    inner = getattr(pipeline, "pipeline", None) or getattr(pipeline, "fn", None)
    return _name_of(inner) if inner is not None and inner is not pipeline else None


class PipelineView:
    """A pipeline's recorded runs."""

    def __init__(self, cache: Cache, name: str) -> None:
        self._cache = cache
        self.name = name

    def __repr__(self) -> str:
        return f"<PipelineView {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PipelineView) and (other.name, other._cache.path) == (
            self.name,
            self._cache.path,
        )

    def __hash__(self) -> int:
        return hash((self.name, self._cache.path))

    @property
    def runs(self) -> list[PipelineRunView]:
        """Its runs, oldest first (`runs[-1]` is the latest), as ZenML listed them."""
        found = self._cache.runs(pipeline=self.name)
        found.reverse()
        return [PipelineRunView(run) for run in found]

    @property
    def last_run(self) -> PipelineRunView:
        """The newest run (today's ZenML: `Client().get_pipeline(name).last_run`)."""
        return PipelineRunView(self._cache.run(f"{self.name}@latest"))

    def get_run_names(self) -> list[str]:
        return [run.name for run in self.runs]

    def get_run(self, run_name: str) -> PipelineRunView:
        """A run by its id (or prefix, `latest`)."""
        run = self._cache.run(run_name)
        if run.pipeline != self.name and run.target.rpartition(":")[2] != self.name:
            raise UsageError(
                f"run {run.id} is a run of pipeline {run.pipeline!r}, not {self.name!r}"
            )
        return PipelineRunView(run)


class PipelineRunView:
    """One run: its status and its steps in run order."""

    def __init__(self, run: Run) -> None:
        self._run = run

    def __repr__(self) -> str:
        return f"<PipelineRunView {self._run.id} of {self._run.pipeline}: {self._run.status}>"

    @property
    def run(self) -> Run:
        """zencache's own view of the run."""
        return self._run

    @property
    def name(self) -> str:
        return self._run.id

    id = name

    @property
    def status(self) -> str:
        return self._run.status

    @property
    def pipeline_name(self) -> str:
        return self._run.pipeline

    @property
    def pipeline_configuration(self) -> dict[str, str]:
        return self._run.parameters

    @property
    def steps(self) -> list[StepView]:
        return [StepView(step) for step in self._run.steps.values()]

    def get_step_names(self) -> list[str]:
        return list(self._run.steps)

    def get_step(self, name: str | None = None, *, step: str | None = None) -> StepView:
        """A step by the name it has in the pipeline (`trainer`), or its function's name."""

        wanted = name if name is not None else step
        if wanted is None:
            raise UsageError("get_step needs a step name, e.g. get_step('trainer')")
        return StepView(find_step(self._run, wanted))


class StepView:
    """One step of a run: `step.outputs["model"].read()`."""

    def __init__(self, step: StepResult) -> None:
        self._step = step

    def __repr__(self) -> str:
        return f"<StepView {self._step.name} ({self.entrypoint_name}): {self._step.status}>"

    @property
    def name(self) -> str:
        return self._step.name

    @property
    def entrypoint_name(self) -> str:
        """The step function's name (a step passed as `trainer=svc_trainer()` is `svc_trainer`)."""
        return self._step.step.rpartition(":")[2].rpartition(".")[2] or self._step.name

    @property
    def status(self) -> str:
        return self._step.status

    @property
    def is_cached(self) -> bool:
        return self._step.status == "cached"

    @property
    def parameters(self) -> dict[str, Any]:
        return self._step.parameters

    @property
    def duration(self) -> float:
        return self._step.duration

    @property
    def outputs(self) -> dict[str, ArtifactView]:
        return {
            name: ArtifactView(self._step, name, content_id)
            for name, content_id in self._step.outputs.items()
        }

    @property
    def output(self) -> ArtifactView:
        """The step's only output."""
        outputs = self.outputs
        if len(outputs) != 1:
            names = ", ".join(outputs) or "none"
            raise UsageError(
                f"step {self.name!r} has {len(outputs)} outputs ({names}); use step.outputs[name]"
            )
        return next(iter(outputs.values()))

    @property
    def inputs(self) -> dict[str, ArtifactView]:
        return {
            name: ArtifactView(self._step, name, content_id)
            for name, content_id in self._step.inputs.items()
        }


class ArtifactView:
    """An artifact: `.read()` loads it through the materializer that wrote it."""

    def __init__(self, step: StepResult, name: str, content_id: str) -> None:
        self._step = step
        self.name = name
        self.id = content_id

    def __repr__(self) -> str:
        return f"<ArtifactView {self.name} {self.id}>"

    @property
    def data_type(self) -> str:
        record = self._record()
        return record.type_name.replace(":", ".")

    @property
    def materializer(self) -> str:
        return self._record().materializer

    def read(self, output_data_type: Any = None, materializer_class: Any = None) -> Any:
        """The value. zencache loads with the materializer that wrote it: a
        different `materializer_class` is refused rather than silently ignored."""
        record = self._record()
        if materializer_class is not None:
            identity = getattr(materializer_class, "identity", None)
            if identity is None or identity() != record.materializer:
                raise UsageError(
                    f"artifact {self.id} was written by {record.materializer}; zencache reads "
                    "it with that materializer: omit materializer_class"
                )
        if (
            output_data_type is None
            and self.name in self._step.outputs
            and self._step.outputs[self.name] == self.id
        ):
            return self._step.output(self.name)
        return load_artifact(self._step.cache.store, record, output_data_type)

    def _record(self) -> Any:
        record = self._step.cache.index.get_artifact(self.id)
        if record is None:
            raise UsageError(
                f"artifact {self.id} ({self.name}) is no longer in the cache at "
                f"{self._step.cache.path}; rerun the pipeline to recreate it"
            )
        return record
