# The README's two commands: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STORE  ?= demo/city.duckdb

.PHONY: install test lint typecheck pytest demo bench clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy cim ingest tiles

pytest: install
	$(BIN)/pytest -q

test: lint typecheck pytest

# Runs the pipeline as far as it is built: init, ingest the sample files, status.
demo: install
	rm -f $(STORE) $(STORE).wal
	mkdir -p $(dir $(STORE))
	$(BIN)/cim --store $(STORE) init --crs EPSG:4550
	$(BIN)/cim --store $(STORE) ingest samples/ifc/*.ifc
	$(BIN)/cim --store $(STORE) status

bench: install
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# Re-pin the Python dependencies from the current environment.
lock:
	$(BIN)/pip freeze --exclude-editable | grep -v '^-e' > requirements.lock

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache
