"""Run the seed's digits pipeline and show which steps executed and which came from the cache.

python examples/digits/run.py            # the first run executes every step
python examples/digits/run.py            # the second finds every step cached
python examples/digits/run.py --gamma 0.01   # only the trainer and evaluator rerun
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pipeline import seed_pipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=float, default=0.001)
    args = parser.parse_args()
    run = seed_pipeline(gamma=args.gamma).run()
    for name, step in run.steps.items():
        print(f"{name:<10} {step.status:<9} {step.duration * 1000:9.1f} ms  {step.key[:12]}")
    print(f"accuracy: {run.output():.4f}   (run {run.run_id}, cache {run.cache.path})")


if __name__ == "__main__":
    main()
