"""ZenML's `zenml.steps` of the seed's era, after `sed s/zenml/zencache/`: re-exports only."""

from .core.steps import Output, step

__all__ = ["Output", "step"]
