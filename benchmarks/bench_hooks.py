"""What hooks cost: a chain of steps cached and cold, with no hook, a no-op hook, and
the MLflow hook on a local sqlite tracking store (one MLflow run per pipeline run,
one nested run per step: create, log_batch, terminate).

Without hooks a run takes the same path as before hooks existed (the hit path
checks one attribute); bench_chain.py is the reference figure for that. The
no-op hook shows the cost of the hook calls themselves (on_step_start and
on_step_end per step, and a read of the step's entry on a hit for its metrics);
the MLflow hook adds MLflow's own cost, which is mostly sqlite writes.

    .venv/bin/python benchmarks/bench_hooks.py [--steps 200] [--mlflow-steps 20] [--reps 5]
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from harness import header, row, scratch, timed

import zencache
from zencache import Cache, pipeline, step

STEPS = 200


@step
def inc(x: int) -> int:
    zencache.log_metric("value", x)
    return x + 1


def chain_of(n: int) -> Any:
    @pipeline(name=f"chain{n}")
    def chain(start: int = 0):
        x = inc(x=start)
        for _ in range(n - 1):
            x = inc(x=x)
        return x

    return chain


class NoOp:
    def on_run_start(self, **_: Any) -> None:
        pass

    def on_step_start(self, **_: Any) -> None:
        pass

    def on_step_end(self, **_: Any) -> None:
        pass

    def on_run_end(self, **_: Any) -> None:
        pass


def measure(root: Path, name: str, steps: int, reps: int, hooks: Any) -> tuple[list, list]:
    chain = chain_of(steps)
    cold, warm = [], []
    for rep in range(reps):
        cache = Cache(root / f"{name}{rep}")
        cold.append(timed(lambda: chain().run(cache=cache, hooks=hooks())))  # noqa: B023
        warm.append(timed(lambda: chain().run(cache=cache, hooks=hooks())))  # noqa: B023
        cache.close()
    return cold, warm


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--mlflow-steps", type=int, default=20)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    header(f"hooks: chains of {args.steps} steps (MLflow: {args.mlflow_steps}), in-process")
    with scratch("hooks") as root:
        chain_of(10)().run(cache=Cache(root / "warmup"))  # imports, fingerprints
        results = {
            "no hook": (measure(root, "none", args.steps, args.reps, lambda: None), args.steps),
            "no-op hook": (
                measure(root, "noop", args.steps, args.reps, lambda: [NoOp()]),
                args.steps,
            ),
        }
        if importlib.util.find_spec("mlflow") is not None:
            from mlflow.tracking import MlflowClient

            from zencache.integrations.mlflow import MLflowHook

            uri = f"sqlite:///{root / 'mlflow.db'}"
            MlflowClient(uri).search_experiments()  # the tables, made before timing

            def mlflow_hooks() -> list[Any]:
                return [MLflowHook(tracking_uri=uri, experiment_name="bench")]

            mlflow_hooks()[0].on_run_start(run_id="warmup", pipeline="bench", params={})
            results["MLflow hook (sqlite)"] = (
                measure(root, "mlflow", args.mlflow_steps, args.reps, mlflow_hooks),
                args.mlflow_steps,
            )
        else:
            print("mlflow is not installed: pip install 'zencache[mlflow]' for its figures")
    print("\nper step (µs), medians of the repetitions:")
    for name, ((cold, warm), steps) in results.items():
        us = 1e6 / steps
        row(f"{name}: cached rerun", warm, "µs", us)
        row(f"{name}: cold run (executed)", cold, "µs", us)


if __name__ == "__main__":
    main()
