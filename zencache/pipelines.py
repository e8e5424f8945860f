"""ZenML's `zenml.pipelines` of the seed's era, after `sed s/zenml/zencache/`: re-exports only."""

from .core.pipeline import pipeline

__all__ = ["pipeline"]
