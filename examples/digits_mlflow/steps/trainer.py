"""Trainers. `svc_trainer_mlflow` is the seed's: an SVC whose training is tracked in
MLflow. It logs through zencache (`log_metric`, `log_metadata`), not through mlflow
directly, so that its numbers are stored with its cache entry and a cached run
shows them in MLflow too (the MLflow hook sends them; see ../run.py)."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin

import zencache
from zencache import step


@step
def svc_trainer_mlflow(
    X_train: np.ndarray, y_train: np.ndarray, gamma: float = 0.001, C: float = 1.0
) -> ClassifierMixin:
    """Train a support vector classifier for the digits dataset, with its metrics tracked."""
    from sklearn.model_selection import cross_val_score
    from sklearn.svm import SVC

    model = SVC(gamma=gamma, C=C)
    for fold, score in enumerate(cross_val_score(model, X_train, y_train, cv=3)):
        zencache.log_metric("cv_accuracy", float(score), step=fold)
    model.fit(X_train, y_train)
    zencache.log_metric("train_accuracy", float(model.score(X_train, y_train)))
    zencache.log_metadata(n_support_vectors=int(model.n_support_.sum()), kernel=model.kernel)
    return model


@step
def svc_trainer(X_train: np.ndarray, y_train: np.ndarray, gamma: float = 0.001) -> ClassifierMixin:
    """Train a support vector classifier for the digits dataset (no tracking)."""
    from sklearn.svm import SVC

    model = SVC(gamma=gamma)
    model.fit(X_train, y_train)
    return model
