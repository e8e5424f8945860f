"""The seed era's ZenML names, after `sed s/zenml/zencache/`: imports, BaseStepConfig,
`enable_cache`, `required_integrations`, and materializers named like steps."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from zencache import Cache
from zencache.cli.phrasing import reason_lines
from zencache.errors import PipelineDefinitionError, UsageError
from zencache.inspection.status import pipeline_status
from zencache.steps import BaseStepConfig


def test_the_seed_imports_work() -> None:
    import zencache
    from zencache.integrations.constants import MLFLOW, SKLEARN, WANDB
    from zencache.io import fileio
    from zencache.materializers.base_materializer import BaseMaterializer
    from zencache.pipelines import pipeline
    from zencache.steps import BaseStepConfig, Output, step

    assert BaseMaterializer is zencache.BaseMaterializer and step is zencache.step
    assert pipeline is zencache.pipeline and Output is zencache.Output
    assert callable(fileio.open) and BaseStepConfig.__name__ == "BaseStepConfig"
    assert (SKLEARN, MLFLOW, WANDB) == ("sklearn", "mlflow", "wandb")


def test_the_integrations_package_imports_nothing_heavy() -> None:
    heavy = ("numpy", "sklearn", "joblib", "pandas", "mlflow", "wandb", "dask")
    code = (
        "import sys; import zencache.integrations.constants; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# --- BaseStepConfig ----------------------------------------------------------------------------


class TrainerConfig(BaseStepConfig):
    gamma: float = 0.001
    C: int = 1
    tags: list = []  # noqa: RUF012  (a field default, copied per instance)


class Needs(BaseStepConfig):
    path: str


def test_a_step_config_has_typed_defaults_like_a_pydantic_model() -> None:
    config = TrainerConfig(gamma=1)
    assert config.gamma == 1.0 and type(config.gamma) is float  # pydantic's int -> float
    assert config.dict() == {"gamma": 1.0, "C": 1, "tags": []}
    assert repr(config) == "TrainerConfig(gamma=1.0, C=1, tags=[])"
    assert config == TrainerConfig(gamma=1.0) and config != TrainerConfig()
    assert TrainerConfig().tags is not TrainerConfig().tags  # mutable defaults are copied
    assert config.copy(update={"C": 3}).C == 3
    assert Needs(path="x").path == "x"
    with pytest.raises(PipelineDefinitionError, match="TrainerConfig has no field 'gama'"):
        TrainerConfig(gama=0.1)
    with pytest.raises(PipelineDefinitionError, match=r"TrainerConfig\.C must be an int"):
        TrainerConfig(C="many")
    with pytest.raises(PipelineDefinitionError, match="Needs needs a value for field 'path'"):
        Needs()


def test_config_fields_enter_the_key_and_status_names_the_field(tmp_path: Any) -> None:
    from zencache.pipelines import pipeline
    from zencache.steps import step

    @step
    def source() -> int:
        return 2

    @step
    def trainer(config: TrainerConfig, x: int) -> float:  # type: ignore[valid-type]
        return config.gamma * x * config.C  # type: ignore[attr-defined]

    @pipeline
    def flow(source, trainer):  # type: ignore[no-untyped-def]
        trainer(x=source())

    cache = Cache(tmp_path / "cache")
    try:
        first = flow(source=source(), trainer=trainer()).run(cache=cache)  # the class's defaults
        assert first.steps["trainer"].output() == 0.002
        same = flow(source=source(), trainer=trainer(config=TrainerConfig())).run(cache=cache)
        assert same.steps["trainer"].status == "cached"
        changed = flow(source=source(), trainer=trainer(config=TrainerConfig(C=5)))
        status = {s.step: s for s in pipeline_status(changed, cache)}
        assert status["trainer"].status == "stale"
        assert reason_lines(status["trainer"].reasons) == ["parameter config.C: 1 -> 5"]
        assert changed.run(cache=cache).steps["trainer"].output() == 0.01
    finally:
        cache.close()


def test_enable_cache_false_always_executes(tmp_path: Any) -> None:
    from zencache.pipelines import pipeline
    from zencache.steps import step

    @step(enable_cache=False)
    def noisy() -> int:
        return 1

    @pipeline
    def flow():  # type: ignore[no-untyped-def]
        noisy()

    assert noisy.options.cache is False
    cache = Cache(tmp_path / "cache")
    try:
        flow().run(cache=cache)
        assert flow().run(cache=cache).steps["noisy"].status == "executed"
    finally:
        cache.close()


def test_required_integrations_are_checked_when_the_pipeline_runs(tmp_path: Any) -> None:
    from zencache.integrations.constants import SKLEARN
    from zencache.pipelines import pipeline
    from zencache.steps import step

    @step
    def one() -> int:
        return 1

    @pipeline(required_integrations=[SKLEARN, "someday"])
    def fine():  # type: ignore[no-untyped-def]
        one()

    @pipeline(required_integrations=["tensorflow"], enable_cache=True)
    def missing():  # type: ignore[no-untyped-def]
        one()

    cache = Cache(tmp_path / "cache")
    try:
        assert fine().run(cache=cache).status == "completed"
        if sys.modules.get("tensorflow") is None:
            import importlib.util

            if importlib.util.find_spec("tensorflow") is None:
                with pytest.raises(
                    UsageError,
                    match=r"requires the integration 'tensorflow'.*"
                    r"pip install tensorflow",
                ):
                    missing().run(cache=cache)
    finally:
        cache.close()
    with pytest.raises(TypeError, match="unexpected keyword argument 'nmae'"):
        pipeline(nmae="x")


def test_a_materializer_subclass_claims_only_the_types_it_declares() -> None:
    from zencache.materializers import BaseMaterializer, registry

    class Thing:
        pass

    saved = dict(registry._by_type_name)
    try:

        class ThingMaterializer(BaseMaterializer):
            ASSOCIATED_TYPES = (Thing,)

        class Variant(ThingMaterializer):
            VERSION = "2"

        assert registry.for_type(Thing) is ThingMaterializer  # not taken over silently

        class TakesOver(ThingMaterializer):
            ASSOCIATED_TYPES = ThingMaterializer.ASSOCIATED_TYPES  # says so

        assert registry.for_type(Thing) is TakesOver
        assert Variant.identity().endswith(
            ":test_a_materializer_subclass_claims_only_the_types_it_declares.<locals>.Variant@2"
        )
    finally:
        registry._by_type_name.clear()
        registry._by_type_name.update(saved)


_BOX_MATERIALIZER = """
import os
from zencache.materializers.base_materializer import BaseMaterializer


class BoxMaterializer(BaseMaterializer):
    def save(self, data):
        with open(os.path.join(self.uri, "v"), "w") as f:
            f.write(repr(data))

    def load(self, data_type):
        with open(os.path.join(self.uri, "v")) as f:
            return eval(f.read())
"""


def test_a_materializer_reason_never_reads_the_same_on_both_sides(tmp_path: Any) -> None:
    import types

    from zencache.pipelines import pipeline
    from zencache.steps import step

    classes = []
    for name in ("zc_test_mats_one", "zc_test_mats_two"):
        module = types.ModuleType(name)
        sys.modules[name] = module
        exec(_BOX_MATERIALIZER, module.__dict__)
        classes.append(module.BoxMaterializer)

    def build(materializer: type) -> Any:
        @step(materializers=materializer)
        def make() -> dict:
            return {"a": 1}

        @pipeline
        def flow():  # type: ignore[no-untyped-def]
            make()

        return flow

    cache = Cache(tmp_path / "cache")
    try:
        build(classes[0])().run(cache=cache)
        (status,) = pipeline_status(build(classes[1])(), cache)
        assert status.status == "stale"
        assert reason_lines(status.reasons) == [
            "materializer changed: output output (zc_test_mats_one:BoxMaterializer@1 -> "
            "zc_test_mats_two:BoxMaterializer@1)"
        ]
    finally:
        cache.close()
        for name in ("zc_test_mats_one", "zc_test_mats_two"):
            sys.modules.pop(name, None)


def test_a_package_reason_never_reads_the_same_on_both_sides() -> None:
    from zencache.cli.phrasing import describe_part

    text = describe_part("dist:scikit-learn", "scikit_learn==1.5", "scikit-learn==1.5")
    assert text == "package scikit-learn scikit_learn==1.5 -> scikit-learn==1.5"
    assert describe_part("dist:numpy", "numpy==1.0", "numpy==2.0") == ("package numpy 1.0 -> 2.0")
