"""Integrations with other tools: `zencache.integrations.constants` names them as ZenML
did; tracker hooks live in modules of their own here: `zencache.integrations.mlflow`
(MLflowHook) and `zencache.integrations.wandb` (WandbHook), selected with
`run(hooks=["mlflow"])` or `hooks = ["mlflow"]` under `[tool.zencache]`
(zencache/executors/hooks.py).

Kept light: importing this package imports nothing else, so that
`from zencache.integrations.constants import SKLEARN` costs nothing; mlflow and
wandb load when a hook is made.
"""
