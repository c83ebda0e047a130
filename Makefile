# Quick start: `make demo`, then `make test`. Both create .venv and install the project on first use;
# later runs reinstall only when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test test-reliability bench dev install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/spotify-pipeline demo

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-reliability: $(STAMP)
	$(BIN)/python -m pytest -m reliability $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

# The Dagster UI on the local profile: `spotify-pipeline local-setup` migrates the warehouse and writes .env
# (instance, emulator, credentials), which dg dev and every Dagster process it starts load.
dev: $(STAMP)
	$(BIN)/spotify-pipeline local-setup
	$(BIN)/dg dev

clean:
	rm -rf $(VENV) .data .dagster .env
