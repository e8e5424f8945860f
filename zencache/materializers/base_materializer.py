"""ZenML's `zenml.materializers.base_materializer`, after `sed s/zenml/zencache/`."""

from .base import BaseMaterializer

__all__ = ["BaseMaterializer"]
