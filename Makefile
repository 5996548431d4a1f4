# Set-up and checks. `make test` and `make demo` do all the set-up a fresh machine needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test demo lint typecheck unit integration integration-containerd integration-legacy engine \
        images lanes-stop ci bench clean-venv

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

# The integration suite on an extra engine lane (scripts/ensure-engine --lane; started when it does not
# run, with the stand-in images copied in): containerd = Docker 26.1 with the containerd image store,
# legacy = Debian bookworm's Docker 20.10. Each lane is a dockerd of its own beside the default one.
integration-containerd integration-legacy: integration-%: $(STAMP) engine images
	@host=$$(bash scripts/ensure-engine --lane $*) && echo "$$host" && env "$$host" $(BIN)/pytest tests/integration

# Stop the extra lanes' engines (never the default one) and remove their bridges and iptables rules.
lanes-stop:
	bash scripts/ensure-engine --stop

# What CI runs: make test and make demo on the default engine, then the integration suite on each lane.
ci:
	bash .ci/run

# A Docker engine with BuildKit and Compose (when none answers: installs Docker 26.1 from Debian
# trixie and starts it; needs root then).
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
