# The two commands the README gives; both set up .venv first (idempotent).
.PHONY: setup quickstart test test-slow lint

setup:
	@bash scripts/setup.sh

quickstart: setup
	.venv/bin/encoderlab quickstart

# pytest exits 5 when a selection collects no tests (say, no test marked slow): nothing failed.
test: setup
	.venv/bin/python -m pytest -q || [ $$? -eq 5 ]

# the tests marked slow (sweeps, studies, torchrun, kill -9, ...); CI runs them after `test`
test-slow: setup
	.venv/bin/python -m pytest -q -m slow || [ $$? -eq 5 ]

lint: setup
	.venv/bin/ruff check src tests benchmarks && .venv/bin/ruff format --check src tests benchmarks
