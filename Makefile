# Two commands for a newcomer: `make demo` and `make test`. Each creates .venv on first use.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Any torch >= 2.4 works. The project machines hold a CPU build of 2.13.0 on disk; elsewhere pip takes it from PyPI.
TORCH ?= torch==2.13.0
# Two cores are the common case here: keep BLAS/OpenMP from oversubscribing them.
export OMP_NUM_THREADS ?= 2

.PHONY: demo test test-slow lint format install clean docs linkcheck

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/avformer demo

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m "slow and not gpu"

lint: $(STAMP)
	$(BIN)/ruff check src tests tools docs/*.py
	$(BIN)/ruff format --check src tests tools docs/*.py

format: $(STAMP)
	$(BIN)/ruff format src tests tools docs/*.py
	$(BIN)/ruff check --fix src tests tools docs/*.py

# The documentation site (mkdocs.yml; docs/docs.md): strict, so a broken internal link or anchor fails the build.
docs: $(STAMP)
	$(BIN)/python -c "import mkdocs, mkdocstrings_handlers.python" 2>/dev/null || $(BIN)/pip install -q -e ".[docs]"
	$(BIN)/mkdocs build --strict --site-dir site

# External links of the built site (needs the internet; `make docs` checks everything else offline).
linkcheck: docs
	$(BIN)/python docs/linkcheck.py site

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
