# cnnlab: `make train` and `make test` set everything up themselves (venv, packages, Debian's Fashion-MNIST).
VENV ?= .venv
PYTHON ?= python3
EXTRAS ?= dev,weights,optuna,slurm,export,track
ARGS ?=
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install data test-deps train test test-fast lint format tensorboard clean wheel-check docs

$(VENV)/.installed: pyproject.toml
	@# Stock Debian/Ubuntu Python has no venv module until python3-venv is installed.
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV) && command -v apt-get >/dev/null && \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq python3-venv && $(PYTHON) -m venv $(VENV); }
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e ".[$(EXTRAS)]"
	touch $@

install: $(VENV)/.installed data  ## venv + cnnlab + dataset

data:  ## Fashion-MNIST from Debian's dataset-fashion-mnist, where apt is available
	@if [ -d $(FASHION_DIR) ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq dataset-fashion-mnist; \
	else echo "no apt-get: put the Fashion-MNIST IDX files in data/FashionMNIST/raw/ or add data.download=true"; fi

train: install  ## the main job; pass overrides with ARGS="model=... data=..."
	$(BIN)/cnnlab train $(ARGS)

# Two workers that take tests off each other when idle (worksteal), one torch thread each (tests/conftest.py).
PYTEST := $(BIN)/pytest -q -n 2 --dist worksteal

# The suite's real parts, from Debian's packages where apt is available: a PostgreSQL server the search tests start
# and stop themselves (shared studies), and headless Chromium for the pages they look at (mlflow ui, the dashboard).
test-deps:
	@missing=""; \
	{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || missing="postgresql"; \
	{ command -v chromium >/dev/null || command -v chromium-browser >/dev/null; } || missing="$$missing chromium"; \
	if [ -z "$$missing" ]; then :; \
	elif command -v apt-get >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	else echo "no apt-get: the tests that need $$missing skip"; fi

test: install test-deps  ## the whole suite, slow tests included (what CI runs); prints the 30 slowest tests
	$(PYTEST) --durations=30

test-fast: install test-deps  ## skip the `slow` tests: the notebooks and the wheel-in-a-fresh-venv run
	$(PYTEST) -m "not slow"

lint:  ## ruff, and the layer contracts (import-linter, see pyproject.toml)
	$(BIN)/ruff check src tests benchmarks docs
	$(BIN)/ruff format --check src tests benchmarks docs
	$(BIN)/lint-imports

docs:  ## the docs site, strictly: a broken link or anchor, or a page missing from mkdocs.yml's nav, fails
	$(BIN)/mkdocs build --strict --site-dir build/site

format:
	$(BIN)/ruff check --fix src tests benchmarks docs
	$(BIN)/ruff format src tests benchmarks docs

wheel-check:  ## build the wheel, install it with its dependencies into a fresh venv, train a few batches elsewhere
	rm -rf build/wheel-check && mkdir -p build/wheel-check
	$(BIN)/pip wheel . --no-deps -q -w build/wheel-check
	$(PYTHON) -m venv build/wheel-check/venv
	build/wheel-check/venv/bin/pip install -q build/wheel-check/cnnlab-*.whl
	cd "$$(mktemp -d)" && $(CURDIR)/build/wheel-check/venv/bin/cnnlab train data=digits model.backbone.padding=1 \
		trainer.max_epochs=1 callbacks.progress_bar.refresh_rate=0 && test -f outputs/runs/*/*_train/metrics.json

tensorboard:
	$(BIN)/tensorboard --logdir outputs

clean:
	rm -rf outputs/runs outputs/multirun .pytest_cache build dist
