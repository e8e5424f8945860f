"""zencache: a content-addressed caching pipeline runner. Never compute the same thing twice.

The public facade: re-exports only. Importing it loads no numpy, scikit-learn or
joblib; they load when a materializer or executor needs them.
"""

from .cache import Cache
from .materializers.base import BaseMaterializer
from .pipeline import pipeline
from .steps import Output, step

__all__ = ["BaseMaterializer", "Cache", "Output", "pipeline", "step"]
__version__ = "0.1.0"
