"""zencache: a content-addressed caching pipeline runner. Never compute the same thing twice.

The public facade: re-exports only. Importing it loads no numpy, scikit-learn or
joblib; they load when a materializer or executor needs them.
"""

from .core.context import get_step_context, log_metadata, log_metric
from .core.pipeline import pipeline
from .core.steps import Output, step
from .materializers.base import BaseMaterializer
from .storage.cache import Cache

__all__ = [
    "BaseMaterializer",
    "Cache",
    "Output",
    "get_step_context",
    "log_metadata",
    "log_metric",
    "pipeline",
    "step",
]
__version__ = "0.1.0"
