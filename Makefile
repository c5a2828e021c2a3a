PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test demo bench lint rabbitmq chromium

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# JupyterLab refuses to start as root without --allow-root (containers, dev VMs run as root).
run: $(STAMP)
	$(BIN)/jupyter lab --notebook-dir=notebooks --ip=127.0.0.1 $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) rabbitmq chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

rabbitmq:
	bash scripts/ensure-rabbitmq.sh

chromium:
	bash scripts/ensure-chromium.sh

demo: $(STAMP)
	$(BIN)/python -m sandbox.demo

bench: $(STAMP) rabbitmq
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
