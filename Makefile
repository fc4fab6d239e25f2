# Everything installs from nothing: `make test` and `make demo` create the virtual environment first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install test lint typecheck demo demo-shapes bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build (its wheel is on disk here); see pyproject's dependencies.
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# mypy over src/ (settings in pyproject's [tool.mypy]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest -q

# Captions the example photos with the model that ships in the package (the attention model) and writes an HTML
# gallery of them with, for each photo, where the model looked for each word.
demo: $(STAMP)
	$(VENV)/bin/rnncap caption examples/photos --attention runs/demo/maps --html runs/demo/gallery.html --overwrite

# Trains a small captioner from scratch on generated pictures, in seconds.
demo-shapes: $(STAMP)
	$(PY) -m rnncap.apps.shapes_demo

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
