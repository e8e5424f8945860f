# Shortcuts; the README's two commands are the reference.
PY ?= .venv/bin/python

.PHONY: lint test bench

lint:
	$(PY) -m ruff check zencache tests benchmarks examples
	$(PY) -m ruff format --check zencache tests benchmarks examples

test:
	$(PY) -m pytest -q

bench:
	for b in chain large dedupe load startup scale executors foundation hooks; do $(PY) benchmarks/bench_$$b.py || exit 1; done
