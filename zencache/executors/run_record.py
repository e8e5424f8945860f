"""The run record: built once at the end of a run and written with the latest pointers.

One transaction writes the run record, its environment (when new) and the
pipeline's `latest` pointers (pipeline/step -> last key, for status and explain),
after every queued step record was committed (the runner waits for that first).
Imports the DAG, records and the index; owns no policy about when a run ends.
"""

from __future__ import annotations

import time
from typing import Any

from ..core.dag import Dag
from ..fingerprint.environment import current_environment, user_sys_path, working_directory
from ..storage.index import Index, Op
from ..storage.records import RunRecord, StepRun


def build(
    run_id: str,
    dag: Dag,
    params: dict[str, str],
    status: str,
    started: float,
    steps: tuple[StepRun, ...],
    target: str,
    step_logs: dict[str, dict[str, Any]] | None = None,
) -> RunRecord:
    """The record of a run that ends now; `step_logs`: what executed steps logged."""
    handles = dag.output_handles()
    return RunRecord(
        run_id=run_id,
        pipeline=dag.pipeline,
        params=params,
        status=status,
        started=started,
        finished=time.time(),
        env_id=current_environment().env_id,
        steps=steps,
        output=tuple(f"{h.invocation}.{h.output}" for h in handles),
        output_is_tuple=isinstance(dag.output, tuple),
        target=target,
        workdir=working_directory(),
        sys_path=user_sys_path(),
        step_logs=step_logs or {},
    )


def write(index: Index, record: RunRecord) -> None:
    """The run record, its environment when the index lacks it, and the latest keys of
    the steps that executed or hit, in one transaction."""
    env = current_environment()
    ops: list[Op] = [("runs", record.run_id.encode(), record.encode())]
    if index.get("envs", env.env_id.encode()) is None:
        ops.append(("envs", env.env_id.encode(), env.encode()))
    prefix = f"{record.pipeline}/".encode()
    latest = {
        prefix + s.name.encode(): s.key.encode()
        for s in record.steps
        if s.key and s.status in ("executed", "cached")
    }
    latest_db = index.db("latest")

    def transaction(txn: Any) -> None:
        for db, key, value in ops:
            if value is None:
                txn.delete(key, db=index.db(db))
            else:
                txn.put(key, value, db=index.db(db))
        # A rerun mostly finds the keys it would write: rewriting them would
        # dirty (and fsync) every page of the table for nothing. One scan of the
        # pipeline's pointers, in key order, is cheaper than a get per step.
        cursor = txn.cursor(db=latest_db)
        found = {}
        if cursor.set_range(prefix):
            for key, value in cursor.iternext():
                if not key.startswith(prefix):
                    break
                found[key] = value
        for key, value in latest.items():
            if found.get(key) != value:
                txn.put(key, value, db=latest_db)

    index.transact(transaction)
