# The README's two commands: `make demo` and `make test`. Everything else is a step of those.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
STORE  ?= demo/city.duckdb
NPM    ?= npm
# CesiumJS (served by the viewer) and the Khronos glTF validator (run by the tests) come from
# npm, pinned by viewer/package-lock.json; node_modules is not committed.
NPM_STAMP := viewer/node_modules/.installed

.PHONY: install test lint typecheck pytest demo demo-samples demo-generate serve bench fuzz clean lock

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/pip install -q --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

$(NPM_STAMP): viewer/package.json viewer/package-lock.json
	cd viewer && $(NPM) ci --prefer-offline --no-audit --no-fund --loglevel=error
	touch $(NPM_STAMP)

install: $(STAMP) $(NPM_STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy $(wildcard cim ingest tiles viewer district)

# `make test` runs the suite without the tests marked slow (the longest browser scenarios,
# worker pools, kill -9 runs: a few minutes on 2 cores); CI runs everything with
# `make test SLOW=1`.
PYTEST_MARK := $(if $(SLOW),,-m "not slow")
pytest: install
	$(BIN)/pytest -q $(PYTEST_MARK)

test: lint typecheck pytest

# The embedded default: the sample district of Tongliao (generated, deterministic) end to end:
# generate -> ingest -> analyze -> tile -> the one map served at http://127.0.0.1:$(PORT).
# A second `make demo` reuses what is unchanged. DEMO_DIR holds the files and the store.
DEMO_DIR ?= demo/district
PORT ?= 8000
demo: install
	$(BIN)/cim demo --dir $(DEMO_DIR) --port $(PORT)

# Only the district's files (GeoPackage, LAZ, three IFC4 models, declaration, manifest).
demo-generate: install
	$(BIN)/cim demo generate $(DEMO_DIR)/data

# The real third-party samples, each in a store of its own: a store in Tongliao's CRS with the
# sample IFC models placed side by side (their own georeferences point elsewhere), and one store
# per other sample region in a CRS that covers it (LiDAR + footprints of Paris-Saclay,
# Montpellier's six tiles, Prague, Dover); the prefab, energy and PV analyzers on the Tongliao
# store (PV also on the LiDAR roofs of Paris-Saclay); each store's 3D Tiles. `make serve`
# serves the one map of the Tongliao samples store.
DEMO := $(dir $(STORE))
demo-samples: install
	rm -rf $(DEMO)*.duckdb* $(DEMO)*.serve*
	mkdir -p $(DEMO)
	$(BIN)/cim --store $(STORE) init --crs EPSG:4550 --origin 122.2630,43.6170
	$(BIN)/cim --store $(STORE) ingest samples/ifc/AC20-FZK-Haus.ifc --anchor 122.2600,43.6200,180,0
	$(BIN)/cim --store $(STORE) ingest samples/ifc/duplex.ifc --anchor 122.2610,43.6200,180,0
	$(BIN)/cim --store $(STORE) ingest samples/ifc/LargeBuilding.ifc --anchor 122.2625,43.6200,180,0
	$(BIN)/cim --store $(STORE) ingest samples/ifc/TallBuilding.ifc --anchor 122.2640,43.6200,180,90
	$(BIN)/cim --store $(STORE) ingest samples/ifc/IfcOpenHouse.ifc
	$(BIN)/cim --store $(STORE) place IfcOpenHouse.ifc --anchor 122.2650,43.6190,180,0
	$(BIN)/cim --store $(STORE) status
	$(BIN)/cim --store $(STORE) analyze prefab
	$(BIN)/cim --store $(STORE) analyze energy
	$(BIN)/cim --store $(STORE) analyze pv
	$(BIN)/cim --store $(DEMO)lidarprod.duckdb init --crs EPSG:2154
	$(BIN)/cim --store $(DEMO)lidarprod.duckdb ingest samples/lidar/lidarprod/*.shp samples/lidar/lidarprod/*.laz
	$(BIN)/cim --store $(DEMO)lidarprod.duckdb analyze pv
	$(BIN)/cim --store $(DEMO)montpellier.duckdb init --crs EPSG:2154
	$(BIN)/cim --store $(DEMO)montpellier.duckdb ingest samples/lidar/montpellier/*.laz
	$(BIN)/cim --store $(DEMO)prague.duckdb init --crs EPSG:32633
	$(BIN)/cim --store $(DEMO)prague.duckdb ingest samples/gis/bubenec.gpkg
	$(BIN)/cim --store $(DEMO)dover.duckdb init --crs EPSG:32618
	$(BIN)/cim --store $(DEMO)dover.duckdb ingest samples/gis/delaware_buildings.geojson
	for s in $(STORE) $(DEMO)lidarprod.duckdb $(DEMO)montpellier.duckdb $(DEMO)prague.duckdb \
	    $(DEMO)dover.duckdb; do $(BIN)/cim --store $$s tile || exit 1; done
	$(BIN)/cim --store $(DEMO)lidarprod.duckdb status
	@echo "demo-samples: stores and their tiles built in $(DEMO); analyzed: prefab (the assembly rate), energy (GB 55015-2021), pv (rooftop PV)"
	@echo "demo-samples: the one map: make serve   (then open http://127.0.0.1:8000)"

# Serves the one map of the samples' Tongliao store (after `make demo-samples`).
serve: install
	$(BIN)/cim --store $(STORE) serve

# The benchmarks print their figures (the LiDAR one at 5M synthetic points here; its default,
# 50M, needs about 2 minutes and 2 GB of temporary disk). tiles.py makes py3dtiles' venv in
# benchmarks/.venv-py3dtiles (gitignored) on first use.
bench: install
	$(BIN)/python benchmarks/ifc_ingest.py
	$(BIN)/python benchmarks/gis_ingest.py
	$(BIN)/python benchmarks/lidar_ingest.py --points 5e6
	$(BIN)/python benchmarks/lidar_query.py --points 2e7 --tiles 4
	$(BIN)/python benchmarks/tiles.py

# Fuzzes each reader (fuzz/: IFC, LAS/LAZ, GIS, CityJSON, GCJ-02, the option parsers) with atheris
# for FUZZ_SECONDS each; prints executions and seconds per harness, and fails with the input
# saved in fuzz/findings/<harness>/ when one raises anything but a CimError.
FUZZ_SECONDS ?= 60
FUZZ_HARNESSES ?=
fuzz: install
	$(BIN)/python -m fuzz.run --seconds $(FUZZ_SECONDS) $(FUZZ_HARNESSES)

# Re-pin the Python dependencies from the current environment.
lock:
	$(BIN)/pip freeze --all --exclude-editable | grep -v -e '^-e' -e '^pip==' > requirements.lock

clean:
	rm -rf $(VENV) demo .pytest_cache .mypy_cache .ruff_cache fuzz/out viewer/node_modules
