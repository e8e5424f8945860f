"""The seed's steps, laid out as its notebook imports them: `from steps import importer,
trainer, evaluator`, where `trainer` is a module of trainers (`trainer.svc_trainer_mlflow`)."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin

import zencache
from zencache import Output, step

from . import trainer


@step
def importer(test_size: float = 0.2, seed: int = 42) -> Output(
    X_train=np.ndarray, X_test=np.ndarray, y_train=np.ndarray, y_test=np.ndarray
):
    """Flatten the 8x8 digit images and split them into train and test sets."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    data = digits.images.reshape((len(digits.images), -1))
    X_train, X_test, y_train, y_test = train_test_split(
        data, digits.target, test_size=test_size, random_state=seed, shuffle=True
    )
    zencache.log_metadata(n_train=len(X_train), n_test=len(X_test), features=data.shape[1])
    return X_train, X_test, y_train, y_test


@step
def evaluator(X_test: np.ndarray, y_test: np.ndarray, model: ClassifierMixin) -> float:
    """The accuracy of the model on the held-out digits, logged as a metric."""
    accuracy = float(model.score(X_test, y_test))
    zencache.log_metric("test_accuracy", accuracy)
    return accuracy


__all__ = ["evaluator", "importer", "trainer"]
