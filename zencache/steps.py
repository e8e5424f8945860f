"""ZenML's `zenml.steps` of the seed's era, after `sed s/zenml/zencache/`: re-exports only."""

from .core.step_config import BaseStepConfig
from .core.steps import Output, step

__all__ = ["BaseStepConfig", "Output", "step"]
