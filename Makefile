# Insight: `make run` runs the whole system, `make test` the fast tests, `make test-all` every
# test. Each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# test-all's parallel pytest workers: most tests wait on the processes they start, not on CPU
TEST_WORKERS ?= 3
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | cksum | cut -d' ' -f1)

.PHONY: install run test test-all lint format typescript lock bench clean

install: $(STAMP)

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev,bench]'
	rm -f $(VENV)/.installed-* && touch $@

run: install          ## everything in the foreground (starts a local Redis if none answers)
	$(BIN)/insight run

test: install         ## the fast tier, after every change: unit tests and a smoke test of each process
	$(BIN)/python -m pytest

test-all: install     ## every test (what CI runs): real Redis, Redis Cluster, Celery, PostgreSQL, Chromium...
	$(BIN)/python -m pytest -m "" -n $(TEST_WORKERS) --dist loadfile

lint: install         ## ruff (lint + format check) and mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install        ## benchmarks side by side with python-socketio and broadcaster (bench/results/)
	$(BIN)/python -m bench

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typescript: install   ## regenerate insight.d.ts from the declared events (and the Next.js example's, with its own)
	$(BIN)/insight schema --modules "" --typescript edge/static/insight.d.ts
	$(BIN)/insight schema --modules demo.events --typescript examples/nextjs/src/hooks/insight.d.ts

lock: install         ## re-pin constraints.txt to what is installed now
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e' > constraints.txt

clean:
	rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
