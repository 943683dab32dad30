# graphwia: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs graphwia, analyses the embedded example
#   make test   same set-up, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
OUT    ?= out

.PHONY: demo test lint reproduce bench install clean fixtures

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,fleet]"
	$(BIN)/python -m compileall -q graphwia cli
	touch $(BIN)/activate

install: $(BIN)/activate

# The linters of make lint, installed once per venv (again when pyproject.toml changes).
$(VENV)/.lint-tools: $(BIN)/activate pyproject.toml
	$(BIN)/pip install --quiet -e ".[lint]"
	touch $@

demo: install
	$(BIN)/graphwia analyze examples/data/trace-demo.parquet --out $(OUT)/demo

test: install
	$(BIN)/python -m pytest -q

# ruff (lint and format), mypy and the layer contracts of .importlinter; .ci/run calls it.
lint: $(VENV)/.lint-tools
	$(BIN)/ruff check graphwia cli tests examples benchmarks
	$(BIN)/ruff format --check graphwia cli tests examples benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

reproduce: install
	$(BIN)/graphwia reproduce --data $(DATA) --out $(OUT)/reproduce

# Byte-compile first, as a regular pip install does: an editable install does not, and with
# PYTHONDONTWRITEBYTECODE set every command would compile graphwia's sources again (~0.08 s).
bench: install
	$(BIN)/python -m compileall -q graphwia cli
	$(BIN)/python benchmarks/bench.py --data $(DATA) --out benchmarks/results

clean:
	rm -rf $(VENV) $(OUT) *.egg-info .pytest_cache

# Record the PyTorch profiler (Kineto) fixtures of tests/data/kineto with examples/pipeline_job.py.
# torch gets a venv of its own: it is never installed into $(VENV) nor needed by the tests.
fixtures:
	$(PYTHON) -m venv .venv-record
	.venv-record/bin/pip install --quiet torch==2.13.0
	.venv-record/bin/pip install --quiet -e .
	.venv-record/bin/python examples/pipeline_job.py --out tests/data/kineto/annotated
	.venv-record/bin/python examples/pipeline_job.py --out tests/data/kineto/stack --no-annotate --steps 4
