# graphwia: two commands set everything up on a fresh machine.
#   make demo   creates .venv, installs graphwia, analyses the embedded example
#   make test   same set-up, runs the test suite
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
DATA   ?= ../shared/data
OUT    ?= out

.PHONY: demo test reproduce bench install clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,fleet]"
	touch $(BIN)/activate

install: $(BIN)/activate

demo: install
	$(BIN)/graphwia analyze examples/data/trace-demo.parquet --out $(OUT)/demo

test: install
	$(BIN)/python -m pytest -q

reproduce: install
	$(BIN)/graphwia reproduce --data $(DATA) --out $(OUT)/reproduce

bench: install
	$(BIN)/python benchmarks/bench.py --data $(DATA) --out benchmarks/results

clean:
	rm -rf $(VENV) $(OUT) *.egg-info .pytest_cache
