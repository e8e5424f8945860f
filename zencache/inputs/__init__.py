"""Inputs that live outside the pipeline: files, folders and environment variables.

Owns how a path parameter becomes a content digest (`trees.py`, with the stat
memo kept in the index), which parameters and variables a step reads from
outside (`external.py`), and the public marker types `File` and `Dir`
(`types.py`). Sits beside the fingerprint layer: imports hashing, errors and the
storage layer's index, never materializers, core or executors.
"""
