# Everything installs from nothing: `make test` and `make demo` create the virtual environment first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install browser test lint typecheck demo demo-shapes serve bench bench-serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch is pinned to the CPU build (its wheel is on disk here); see pyproject's dependencies.
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) browser

# The browser of the page's test (tests/test_serve_browser.py): Debian's chromium and chromium-driver, installed with
# apt-get when missing (as root, else through passwordless sudo). Never fails the build: without them that test skips
# and says why.
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "browser: /usr/bin/chromium and /usr/bin/chromedriver are installed"; \
	elif ! command -v apt-get >/dev/null 2>&1; then \
		echo "browser: no apt-get here: install chromium and chromedriver yourself, else the browser test skips"; \
	else \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo "sudo -n"); \
		{ $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q chromium chromium-driver; } \
			|| echo "browser: could not install chromium and chromium-driver: the browser test will skip"; \
	fi

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

# mypy over src/ (settings in pyproject's [tool.mypy]).
typecheck: $(STAMP)
	$(VENV)/bin/mypy

test: lint typecheck browser
	$(PY) -m pytest -q

# Captions the example photos with the model that ships in the package (the attention model) and writes an HTML
# gallery of them with, for each photo, where the model looked for each word.
demo: $(STAMP)
	$(VENV)/bin/rnncap caption examples/photos --attention runs/demo/maps --html runs/demo/gallery.html --overwrite

# Trains a small captioner from scratch on generated pictures, in seconds.
demo-shapes: $(STAMP)
	$(PY) -m rnncap.apps.shapes_demo

# The web page and JSON API on the shipped model, at http://127.0.0.1:8000/ (Ctrl-C stops it; see `rnncap serve -h`).
serve: $(STAMP)
	$(VENV)/bin/rnncap serve

bench: $(STAMP)
	$(PY) benchmarks/bench_engine.py

# The server under load: 1, 4 and 16 concurrent clients on loopback (benchmarks/README.md).
bench-serve: $(STAMP)
	$(PY) benchmarks/bench_serve.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .mypy_cache
