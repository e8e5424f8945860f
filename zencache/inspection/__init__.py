"""Read-mostly views of the cache: why a step is stale, whether a run reproduces.

    status.py        `cache status` and `explain` as data
    audit.py         re-executes a recorded run in fresh interpreters and compares ids
    audit_worker.py  the fresh interpreter of an audit

Imports everything below the executors; the CLI phrases what these return.
"""
