"""Integrations with other tools, each in its own module, imported only when used.

`zencache.integrations.mlflow` (MLflowHook) and `zencache.integrations.wandb`
(WandbHook) are hooks (zencache/executors/hooks.py): select them with
`run(hooks=["mlflow"])` or `hooks = ["mlflow"]` under `[tool.zencache]`. This
package imports nothing heavy: mlflow and wandb load when a hook is made.
"""
