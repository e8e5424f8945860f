"""zencache: a content-addressed caching pipeline runner. Never compute the same thing twice.

The public facade: re-exports only. Importing it loads no numpy, scikit-learn or
joblib; they load when a materializer or executor needs them.
"""

from .core.context import get_step_context, log_metadata, log_metric
from .core.pipeline import pipeline
from .core.steps import Output, step
from .inputs.types import Dir, File
from .materializers.base import BaseMaterializer
from .results import Artifact, Cache


def __getattr__(name: str) -> object:
    # Run and StepResult are what runs return: their module loads the
    # materializers, which `import zencache` does not need.
    if name in ("Run", "StepResult"):
        from .core import runs

        return getattr(runs, name)
    raise AttributeError(f"module 'zencache' has no attribute {name!r}")


__all__ = [
    "Artifact",
    "BaseMaterializer",
    "Cache",
    "Dir",
    "File",
    "Output",
    "Run",
    "StepResult",
    "get_step_context",
    "log_metadata",
    "log_metric",
    "pipeline",
    "step",
]
__version__ = "0.1.0"
