# Set-up and checks. `make test` and `make demo` do all the set-up a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck unit integration engine images bench clean-venv

test: lint typecheck engine images
	$(BIN)/pytest

demo: $(STAMP) engine images
	$(BIN)/python examples/demo.py

# The virtualenv, with the exact versions of requirements/dev.lock (regenerate it with `make lock`).
$(STAMP): pyproject.toml requirements/dev.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest tests/unit

integration: $(STAMP) engine images
	$(BIN)/pytest tests/integration

# A Docker engine with BuildKit and Compose (installs Debian's engine when none answers; needs root then).
engine:
	bash scripts/ensure-engine

# python:3.11-slim and postgres:15: pulled where a registry answers, else built from Debian packages.
images: engine
	bash scripts/stand-in-images

bench: $(STAMP) engine images
	$(BIN)/python benchmarks/run_all.py

lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile pyproject.toml --extra dev --python-version 3.10 --universal \
	  --generate-hashes --index-url https://pypi.org/simple -o requirements/dev.lock

clean-venv:
	rm -rf $(VENV)
