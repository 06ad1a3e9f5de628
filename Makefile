# gexplain: `make run` (set up + quickstart job), `make test` (set up + tests).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= pipelines/configs/quickstart.toml

.PHONY: run test setup setup-dev lint bench docs clean r-references

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

$(VENV)/.installed: pyproject.toml setup.py | $(BIN)/python
	$(BIN)/python -m pip install torch==2.13.0
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -e '.[dev]'
	touch $@

setup: $(VENV)/.installed

setup-dev: $(VENV)/.installed-dev

run: setup
	$(BIN)/gexplain run $(CONFIG)

test: setup-dev
	$(BIN)/python -m pytest -q

lint: setup-dev
	$(BIN)/ruff check gexplain storage cluster pipelines tests benchmarks setup.py
	$(BIN)/ruff format --check gexplain storage cluster pipelines tests benchmarks setup.py

bench: setup-dev
	$(BIN)/python benchmarks/run_all.py

docs: setup
	$(BIN)/python -m gexplain.storage.schema > docs/store.md
	$(BIN)/python -m gexplain.pipelines.cli.docs > docs/cli.md

# R DESeq2 / edgeR outputs the parity tests compare with (Debian: apt-get install r-bioc-deseq2 r-bioc-edger)
r-references:
	Rscript tests/r/make_references.R tests/r/references

clean:
	rm -rf runs .pytest_cache
