"""The seed's last cell, `trainer.svc_trainer_mlflow()`, tracked in MLflow.

    pip install 'zencache[mlflow]'
    python examples/digits_mlflow/run.py        # every step executes; MLflow gets a run
    python examples/digits_mlflow/run.py        # every step cached; MLflow gets a run too,
                                                # each step tagged zencache.status=cached
    mlflow ui --backend-store-uri sqlite:///mlflow.db   # (with the full mlflow package)

The MLflow runs go to `--tracking-uri` (default: sqlite:///mlflow.db in the working
directory), experiment `--experiment` (default: digits); the cache is the project's
(.zencache) unless `--cache-dir` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from steps import evaluator, importer, trainer

from zencache import pipeline
from zencache.integrations.mlflow import MLflowHook


# definition of our pipeline (the seed's, unchanged)
@pipeline
def digits_pipeline(
    importer,
    trainer,
    evaluator,
):
    """Links all the steps together in a pipeline"""
    X_train, X_test, y_train, y_test = importer()
    model = trainer(X_train=X_train, y_train=y_train)
    evaluator(X_test=X_test, y_test=y_test, model=model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", default=f"sqlite:///{os.path.abspath('mlflow.db')}")
    parser.add_argument("--experiment", default="digits")
    parser.add_argument("--cache-dir", default=None)
    parser.add_argument("--gamma", type=float, default=0.001)
    args = parser.parse_args()

    # Initialize the pipeline (the seed's cell), then run it with the MLflow hook.
    first_pipeline = digits_pipeline(
        importer=importer(),
        trainer=trainer.svc_trainer_mlflow(gamma=args.gamma),
        evaluator=evaluator(),
    )
    hook = MLflowHook(tracking_uri=args.tracking_uri, experiment_name=args.experiment)
    run = first_pipeline.run(hooks=[hook], cache=args.cache_dir)

    for name, result in run.steps.items():
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()) or "-"
        print(f"{name:<10} {result.status:<9} {metrics}")
    print(f"zencache run {run.run_id}; MLflow: {args.tracking_uri}, experiment {args.experiment!r}")


if __name__ == "__main__":
    main()
