"""The seed's own SklearnMaterializer (ZenML's guide) runs on zencache, imports aside.

The notebook cell is kept as text and executed inside `seed_materializer`, with
the registry's tables swapped for copies, so that its registration for
ClassifierMixin ends with the test rather than taking over scikit-learn models
for the rest of the session. A test checks the text against the seed when the
seed folder (shared/seed beside the repository) is present.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.svm import SVC

from zencache import Cache
from zencache.io import fileio
from zencache.materializers import BaseMaterializer, registry
from zencache.materializers.artifacts import load_artifact, save_artifact
from zencache.materializers.sklearn import SklearnMaterializer

# The seed's imports, with `zenml` replaced by `zencache` (and ClassifierMixin,
# which the seed imports in the cell before).
SEED_IMPORTS = """\
import os
import numpy as np
from typing import Any, Type
import pickle

from sklearn.base import ClassifierMixin
from zencache.materializers import BaseMaterializer
from zencache.io import fileio
from zencache import step

"""

# Verbatim from the seed, not one character changed.
SEED_MATERIALIZER = '''\
DEFAULT_FILENAME = 'model'

class SklearnMaterializer(BaseMaterializer):
    """Materializer to read data to and from sklearn."""

    ASSOCIATED_TYPES = (
        ClassifierMixin,
    )

    def handle_input(
        self, data_type: Type[Any]
    ) -> ClassifierMixin:
        """Reads a ClassifierMixin model from a pickle file."""
        super().handle_input(data_type)
        filepath = os.path.join(self.artifact.uri, DEFAULT_FILENAME)
        with fileio.open(filepath, "rb") as fid:
            clf = pickle.load(fid)
        return clf

    def handle_return(
        self,
        clf: ClassifierMixin
    ) -> None:
        """Creates a pickle for a ClassifierMixin model

        Args:
            clf: A ClassifierMixin model.
        """
        super().handle_return(clf)
        filepath = os.path.join(self.artifact.uri, DEFAULT_FILENAME)
        with fileio.open(filepath, "wb") as fid:
            pickle.dump(clf, fid)
'''

SEED_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "seed"


@pytest.fixture
def seed_materializer(monkeypatch: pytest.MonkeyPatch) -> type[BaseMaterializer]:
    """The seed's class, defined in a registry that is restored after the test."""
    registry._load_lazy_families()  # first, so that the built-ins land in the real tables
    for table in ("_by_type_name", "_builtin_by_type_name", "_by_identity"):
        monkeypatch.setattr(registry, table, dict(getattr(registry, table)))
    namespace: dict[str, Any] = {"__name__": "seed_notebook"}
    exec(compile(SEED_IMPORTS + SEED_MATERIALIZER, "<seed notebook>", "exec"), namespace)
    return namespace["SklearnMaterializer"]


def test_seed_text_is_verbatim() -> None:
    cells = sorted(SEED_DIR.glob("*.txt")) if SEED_DIR.is_dir() else []
    if not cells:
        pytest.skip(f"no seed beside the repository ({SEED_DIR})")
    assert any(SEED_MATERIALIZER in cell.read_text() for cell in cells)


def test_seed_materializer_round_trips_a_fitted_svc(
    seed_materializer: type[BaseMaterializer], tmp_path: Path
) -> None:
    digits = load_digits()
    X_train, y_train = digits.data[:200], digits.target[:200]
    X_test = digits.data[200:400]
    model = SVC(gamma=0.001).fit(X_train, y_train)
    # The user's registration beats the built-in one for a step declared -> ClassifierMixin.
    assert registry.for_type(ClassifierMixin) is seed_materializer
    assert registry.for_value(model) is seed_materializer

    store = Cache(tmp_path / "cache").store
    record = save_artifact(store, model, seed_materializer)
    assert record.materializer == "seed_notebook:SklearnMaterializer@1"
    assert set(record.files) == {"model"}
    loaded = load_artifact(store, record, ClassifierMixin)

    assert type(loaded) is SVC
    assert (loaded.predict(X_test) == model.predict(X_test)).all()
    assert save_artifact(store, loaded, seed_materializer).content_id == record.content_id


def test_the_seed_registration_ended_with_its_test() -> None:
    """Runs after the test above (file order): the built-in is back for ClassifierMixin."""
    assert registry.for_type(ClassifierMixin) is SklearnMaterializer


def test_fileio_offers_zenmls_helpers(tmp_path: Path) -> None:
    folder = tmp_path / "a" / "b"
    fileio.makedirs(folder)
    fileio.makedirs(folder)  # exists already: fine
    with fileio.open(folder / "x.txt", "w") as fh:
        fh.write("hi")
    assert fileio.exists(folder / "x.txt") and fileio.isdir(folder)
    assert fileio.listdir(folder) == ["x.txt"]
    assert fileio.size(folder / "x.txt") == 2
    fileio.copy(folder / "x.txt", folder / "y.txt")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fileio.rename(folder / "x.txt", folder / "y.txt")
    fileio.rename(folder / "x.txt", folder / "y.txt", overwrite=True)
    assert fileio.glob(folder / "*.txt") == [str(folder / "y.txt")]
    fileio.rmtree(tmp_path / "a")
    assert not fileio.exists(tmp_path / "a")
