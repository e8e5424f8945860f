"""ZenML's integration names (`zenml.integrations.constants` of the seed's era), and
what each needs installed, for `@pipeline(required_integrations=[SKLEARN])`.

A leaf: imports nothing. REQUIREMENTS maps a name to the modules that must be
importable and the pip requirement that provides them; zencache checks them
(importlib.util.find_spec, nothing is imported) when such a pipeline runs.
"""

from __future__ import annotations

AIRFLOW = "airflow"
AWS = "aws"
AZURE = "azure"
DASH = "dash"
EVIDENTLY = "evidently"
FACETS = "facets"
GCP = "gcp"
GRAPHVIZ = "graphviz"
KUBEFLOW = "kubeflow"
MLFLOW = "mlflow"
PLOTLY = "plotly"
PYTORCH = "pytorch"
PYTORCH_L = "pytorch_lightning"
SCIPY = "scipy"
SKLEARN = "sklearn"
TENSORFLOW = "tensorflow"
WANDB = "wandb"

# name -> (modules that must be importable, what to pip install)
REQUIREMENTS: dict[str, tuple[tuple[str, ...], str]] = {
    AIRFLOW: (("airflow",), "apache-airflow"),
    AWS: (("boto3",), "boto3"),
    AZURE: (("adlfs",), "adlfs"),
    DASH: (("dash",), "dash"),
    EVIDENTLY: (("evidently",), "evidently"),
    FACETS: (("facets_overview",), "facets-overview"),
    GCP: (("gcsfs",), "gcsfs"),
    GRAPHVIZ: (("graphviz",), "graphviz"),
    KUBEFLOW: (("kfp",), "kfp"),
    MLFLOW: (("mlflow",), "mlflow"),
    PLOTLY: (("plotly",), "plotly"),
    PYTORCH: (("torch",), "torch"),
    PYTORCH_L: (("pytorch_lightning",), "pytorch-lightning"),
    SCIPY: (("scipy",), "scipy"),
    SKLEARN: (("sklearn",), "scikit-learn"),
    TENSORFLOW: (("tensorflow",), "tensorflow"),
    WANDB: (("wandb",), "wandb"),
}
