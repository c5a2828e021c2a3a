PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
COMPAT_STAMP := $(VENV)/.community-extensions

# Nameko community extensions that tests/compat runs on sandbox. They require the real Nameko,
# which sandbox stands in for (sandbox/alias.py): installed without their dependencies, which
# the test extra lists instead.
COMMUNITY_EXTENSIONS := nameko-sqlalchemy==1.5.0 nameko-redis==1.1.0
# The Compose specification's JSON schema, which tests/cli/test_manifests.py checks compose.yaml
# against, offline: docker-compose 1.x ships it (compose/config/compose_spec.json, Apache-2.0).
# Without its dependencies, which pin PyYAML below 6: only the schema file is read.
COMPOSE_SCHEMA := docker-compose==1.29.2

.PHONY: run test demo bench lint rabbitmq redis chromium netcat

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# Only for the tests: nameko-sqlalchemy's pytest plugin warns in every pytest session, which
# the course's pytest cells would show.
$(COMPAT_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q --no-deps $(COMMUNITY_EXTENSIONS) $(COMPOSE_SCHEMA)
	touch $(COMPAT_STAMP)

# JupyterLab refuses to start as root without --allow-root (containers, dev VMs run as root).
run: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

# Two workers, each given whole files (--dist loadfile) so that a module's shared kernel, browser
# or service starts once: most tests wait on kernels, processes and RabbitMQ, not on the CPU.
test: $(COMPAT_STAMP) rabbitmq redis chromium netcat
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -n 2 --dist loadfile

rabbitmq:
	bash scripts/ensure-rabbitmq.sh

redis:
	bash scripts/ensure-redis.sh

chromium:
	bash scripts/ensure-chromium.sh

# `sandbox backdoor` talks through netcat, as Nameko's does (tests/cli/test_backdoor.py).
netcat:
	bash scripts/ensure-package.sh nc netcat-openbsd \
		|| echo "netcat is not available: the sandbox backdoor client tests will be skipped" >&2

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo

bench: $(STAMP) rabbitmq
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
