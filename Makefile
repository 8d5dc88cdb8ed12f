# relaygate: `make run` starts the demo gateway, `make test` runs every check.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-dev

.PHONY: install run serve test test-tools lint typecheck unit bench image image-check deploy-generate clean

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
	$(BIN)/ruff check relaygate tests benchmarks dashboards deploy
	$(BIN)/ruff format --check relaygate tests benchmarks dashboards deploy

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

test: test-tools lint typecheck unit image-check

bench: $(STAMP)
	bash benchmarks/run.sh

# The container image (Dockerfile), where a builder is installed: build it, then run
# `relaygate --version` and `relaygate validate` on the Kubernetes config inside it, as the
# image's own unprivileged user with a read-only root filesystem. `make test` needs no
# builder: it lints the Dockerfile (hadolint) and checks what it promises (tests/deploy).
IMAGE ?= relaygate:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
CONTAINER ?= docker
image:
	$(CONTAINER) build -t $(IMAGE) .
	$(CONTAINER) run --rm --read-only $(IMAGE) --version
	$(CONTAINER) run --rm --read-only -e OPENAI_API_KEY=x -e GROQ_API_KEY=x \
		-e RELAYGATE_API_KEY=x -e RELAYGATE_ADMIN_KEY=x \
		-v "$(CURDIR)/deploy/kustomize/base/relaygate.yaml:/etc/relaygate/relaygate.yaml:ro" \
		$(IMAGE) validate /etc/relaygate/relaygate.yaml

# Part of `make test`: the image is built and smoke-tested (make image) wherever a container
# builder answers; where none does (no daemon, or CONTAINER=none), the suite's hadolint test
# and tests/deploy/test_dockerfile.py are the image's check, and this says so.
image-check:
	@if $(CONTAINER) info >/dev/null 2>&1; then $(MAKE) --no-print-directory image; \
	else echo "make: no container builder answers ($(CONTAINER)): image not built here; the Dockerfile is linted by hadolint in the suite"; fi

# deploy/kustomize/base/prometheusrule.yaml from dashboards/rules/ (tests/deploy checks it).
deploy-generate: $(STAMP)
	$(BIN)/python deploy/generate.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
