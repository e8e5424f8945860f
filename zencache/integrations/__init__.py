"""Integrations with other tools: `zencache.integrations.constants` names them as ZenML
did; tracker hooks (MLflow, W&B) live in modules of their own here.

Kept light: importing this package imports nothing else, so that
`from zencache.integrations.constants import SKLEARN` costs nothing.
"""
