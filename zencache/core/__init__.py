"""What to compute: steps, pipelines, the traced DAG, static key parts and runs.

    steps.py     @step, output specs, configured step instances
    pipeline.py  @pipeline: binding and .run()
    dag.py       tracing a pipeline function into invocations
    plan.py      per-invocation static key parts (fingerprints, parameters, materializers)
    keys.py      the cache key
    runs.py      what a run returns: per-step status and lazy outputs

Imports storage, fingerprint and materializers; never an executor at import time.
"""
