"""The digits pipeline, in both styles zencache accepts."""

from __future__ import annotations

from steps import evaluator, importer, svc_trainer

from zencache import pipeline


@pipeline
def digits_pipeline(importer, trainer, evaluator):
    """Links all the steps together in a pipeline (the seed's style: steps are injected)."""
    X_train, X_test, y_train, y_test = importer()
    model = trainer(X_train=X_train, y_train=y_train)
    return evaluator(X_test=X_test, y_test=y_test, model=model)


@pipeline
def digits(gamma: float = 0.001):
    """The same pipeline with the steps called directly; `gamma` is a run parameter."""
    X_train, X_test, y_train, y_test = importer()
    model = svc_trainer(X_train=X_train, y_train=y_train, gamma=gamma)
    return evaluator(X_test=X_test, y_test=y_test, model=model)


def seed_pipeline(gamma: float = 0.001):
    """The seed's instance: digits_pipeline(importer=importer(), trainer=..., evaluator=...)."""
    return digits_pipeline(
        importer=importer(), trainer=svc_trainer(gamma=gamma), evaluator=evaluator()
    )
