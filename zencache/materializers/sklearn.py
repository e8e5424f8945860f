"""SklearnMaterializer: scikit-learn estimators through joblib.

Claims scikit-learn's estimator base and mixins by qualified name, so importing
this module imports neither scikit-learn nor joblib; they load on first save or
load. joblib is pickle underneath: loading runs code chosen by whoever wrote
the cache, which is why USES_PICKLE is set (refused under ZENCACHE_ALLOW_PICKLE=0).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from .base import BaseMaterializer, Files

_MODEL = "model.joblib"


class SklearnMaterializer(BaseMaterializer):
    """Any estimator, and anything declared as one of scikit-learn's mixins.

    The mixins are listed because they are not BaseEstimator subclasses: a step
    declared `-> ClassifierMixin` is looked up by that type, not by the value's.
    """

    ASSOCIATED_TYPE_NAMES = (
        "sklearn.base.BaseEstimator",
        "sklearn.base.ClassifierMixin",
        "sklearn.base.RegressorMixin",
        "sklearn.base.TransformerMixin",
        "sklearn.base.ClusterMixin",
        "sklearn.base.BiclusterMixin",
        "sklearn.base.DensityMixin",
        "sklearn.base.OutlierMixin",
    )
    USES_PICKLE = True

    def dump(self, data: Any) -> dict[str, Any]:
        import joblib

        # Uncompressed: compression would hide unchanged arrays from chunk dedupe.
        buffer = io.BytesIO()
        joblib.dump(data, buffer)
        return {_MODEL: buffer.getbuffer()}

    def restore(self, files: Files, data_type: type) -> Any:
        import joblib

        return joblib.load(io.BytesIO(files[_MODEL]))

    def save(self, data: Any) -> None:
        (Path(self.uri) / _MODEL).write_bytes(self.dump(data)[_MODEL])

    def load(self, data_type: type) -> Any:
        return self.restore({_MODEL: (Path(self.uri) / _MODEL).read_bytes()}, data_type)
