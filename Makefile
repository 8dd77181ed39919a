# The two commands the README gives; both set up .venv first (idempotent).
.PHONY: setup quickstart test test-slow lint

setup:
	@bash scripts/setup.sh

quickstart: setup
	.venv/bin/encoderlab quickstart

test: setup
	.venv/bin/python -m pytest -q

test-slow: setup
	.venv/bin/python -m pytest -q -m slow

lint: setup
	.venv/bin/ruff check src tests benchmarks && .venv/bin/ruff format --check src tests benchmarks
