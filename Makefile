# relaygate: `make run` starts the demo gateway, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install run serve test test-tools lint typecheck unit bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	@echo "make: installing relaygate and its dev dependencies into $(VENV) with pip (nothing outside it)"
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(BIN)/relaygate demo

serve: $(STAMP)
	$(BIN)/relaygate serve --config $(or $(CONFIG),relaygate/demo/demo.yaml)

lint: $(STAMP)
	$(BIN)/ruff check relaygate tests benchmarks dashboards
	$(BIN)/ruff format --check relaygate tests benchmarks dashboards

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest -n 2 --dist loadscope -q -p no:cacheprovider

# Tools the suite drives for real (promtool/prometheus, headless Chromium, redis-server): each script says
# what is missing and what apt will install before installing it (root or sudo -n), or names
# the packages and stops.
test-tools:
	bash scripts/ensure-chromium.sh
	bash scripts/ensure-prometheus.sh
	bash scripts/ensure-redis.sh

test: test-tools lint typecheck unit

bench: $(STAMP)
	bash benchmarks/run.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
