"""The seed's steps: load scikit-learn's bundled digits, train an SVC, score it."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.svm import SVC

from zencache import Output, step


@step
def importer(test_size: float = 0.2, seed: int = 42) -> Output(
    X_train=np.ndarray, X_test=np.ndarray, y_train=np.ndarray, y_test=np.ndarray
):
    """Flatten the 8x8 digit images and split them into train and test sets."""
    digits = load_digits()
    data = digits.images.reshape((len(digits.images), -1))
    X_train, X_test, y_train, y_test = train_test_split(
        data, digits.target, test_size=test_size, random_state=seed, shuffle=True
    )
    return X_train, X_test, y_train, y_test


@step
def svc_trainer(X_train: np.ndarray, y_train: np.ndarray, gamma: float = 0.001) -> ClassifierMixin:
    """Train a support vector classifier for the digits dataset."""
    model = SVC(gamma=gamma)
    model.fit(X_train, y_train)
    return model


@step
def evaluator(X_test: np.ndarray, y_test: np.ndarray, model: ClassifierMixin) -> float:
    """The accuracy of the model on the held-out digits."""
    return float(model.score(X_test, y_test))
