# make demo: a real search on the built-in ELPV solar-cell data (about ten minutes on 2 cores),
# then its report (runs/elpv-demo/report.html).
# make test: the test suite without the tests marked slow (the end-to-end runs of the CLI that
# kill, resume or compress searches), spread over up to 4 processes (pytest-xdist): each file's
# tests run in one process, and the report's and the dashboard's tests, which share one search,
# together. make test-slow: the slow tests alone, spread the same way. CI (.ci/run) runs both.
# Each creates the virtual environment it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/edgenas search elpv --max-latency 1ms --resolution 64 --epochs 4 --trials 40 \
		--time-budget 8m --baseline mobilenetv2:0.5 --out runs/elpv-demo
	$(BIN)/edgenas report runs/elpv-demo

test: $(STAMP)
	$(BIN)/pytest -q -m "not slow" --numprocesses auto --maxprocesses 4 --dist loadgroup

test-slow: $(STAMP)
	$(BIN)/pytest -q -m slow --numprocesses auto --maxprocesses 4 --dist loadgroup

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks tools
	$(BIN)/ruff format --check src tests benchmarks tools
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python tools/check_private_names.py src

bench: $(STAMP)
	$(BIN)/python benchmarks/elpv_search.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
