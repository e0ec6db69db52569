# clever-warehouse: `make demo` runs the pipeline on the embedded sample district,
# `make test` runs every test. Both do their own set-up.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)/devkit
export CLEVER_PG_PORT ?= 55432
export SIM_PORT ?= 8765
AIRFLOW_PORT ?= 8080
DEMO_UI ?= 1
PYTEST_ARGS ?=
# Parallel test workers (pytest-xdist); each starts its own PostgreSQL and Airflow home.
# --dist loadfile: a file's tests run on one worker, so module fixtures are set up once.
TEST_WORKERS ?= 2
SIZE ?= 20000
BENCH_ARGS ?=
DISTRICTS ?= 50
SIZE_MIX ?=
EXECUTOR ?= local
FLEET_ARGS ?=

DISTRICT ?= demo

.PHONY: help setup test test-ui test-tools lint db-up db-down db-status simulator sample-data expectations \
	constraints demo sync airflow docs schema-docs report deploy config-schema config-check compose-config bench \
	bench-fleet clean

help:  ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

$(STAMP): requirements.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	@touch $@

setup: $(STAMP)  ## create .venv and install pinned packages (quick when done)

constraints:  ## re-pin every transitive package after changing requirements.txt
	$(PY) -m pip install --quiet -r requirements.txt
	{ sed -n '1,2p' constraints.txt; $(PY) -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt

test: setup test-tools  ## run every test, the browser test too (starts its own PostgreSQL, simulator, Airflow)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-ui: setup test-tools  ## only the Airflow UI test in headless Chromium (screenshots in test-artifacts/ui)
	$(PY) -m pytest -m ui $(PYTEST_ARGS)

# Debian's chromium (Playwright drives it) and docker-compose (validates docker-compose.yaml),
# installed with apt-get when missing and we are root. Not fatal: the tests that need them
# fail saying what to install.
test-tools: setup
	-@$(PY) -m clever_devkit.system_tools chromium docker-compose

lint: setup  ## ruff, including Airflow 3 rules on the DAGs; sqlfluff on the dbt project's SQL
	$(VENV)/bin/ruff check plugins devkit tests dags
	$(VENV)/bin/ruff check --select AIR3 dags
	cd dbt_project && $(CURDIR)/$(VENV)/bin/sqlfluff lint --processes 2 --disable-progress-bar .

db-up: setup  ## start the embedded warehouse (skipped if AIRFLOW_CONN_CLEVER_WAREHOUSE is set)
	$(PY) -m clever_devkit.pg_local up

db-down: setup  ## stop the embedded warehouse (data kept under .local/)
	$(PY) -m clever_devkit.pg_local down

db-status: setup  ## is the embedded warehouse running?
	$(PY) -m clever_devkit.pg_local status

simulator: setup  ## serve the sample district on 127.0.0.1:SIM_PORT (default 8765; token demo-district-token)
	$(PY) -m clever_devkit.simulator --port $(SIM_PORT)

sample-data: setup  ## regenerate the shipped sample districts, Secure Sync and District SSO (deterministic)
	$(PY) -m clever_devkit.sample_district --out devkit/clever_devkit/sample_data/certification_isd
	$(PY) -m clever_devkit.sample_district --out devkit/clever_devkit/sample_data/sso_district --seed 21 \
		--district-name "Single Sign-On USD" --integration sso

expectations: setup  ## regenerate the Great Expectations suites from Clever's OpenAPI specs
	GX_ANALYTICS_ENABLED=false $(PY) -m clever_devkit.suites

demo: setup db-up  ## run the pipeline on the sample district and print a summary
	$(PY) -m clever_devkit.demo --sim-port $(SIM_PORT) $(if $(filter 0,$(DEMO_UI)),--no-ui)

sync: setup db-up  ## one full sync of DISTRICT (default demo) through a real Airflow run
	$(PY) -m clever_devkit.runner sync --district $(DISTRICT) $(if $(CONF),--conf '$(CONF)')

airflow: setup db-up  ## airflow standalone with every district's DAG on AIRFLOW_PORT (8080); prints how to log in
	$(PY) -m clever_devkit.runner airflow --port $(AIRFLOW_PORT)

docs: setup db-up  ## build dbt docs (dbt_project docs into .local/artifacts/dbt_target)
	$(PY) -m clever_devkit.demo --docs-only

schema-docs: setup  ## regenerate docs/SCHEMA.md's column tables from dbt's manifest (the doc blocks)
	$(PY) -m clever_devkit.schema_docs

report: setup db-up  ## rollover report (HTML with charts) per configured district into .local/artifacts/reports
	$(PY) -m clever_devkit.commands report

deploy: setup db-up  ## deploy the dbt project to the warehouse now (after an upgrade; the first build would)
	$(PY) -m clever_devkit.commands deploy

config-schema: setup  ## regenerate config/districts.schema.json from the config's typed model
	$(PY) -m clever.config schema > config/districts.schema.json

config-check: setup  ## validate config/districts.yml (or CLEVER_DISTRICTS_FILE): one line per error
	@$(PY) -m clever.config check

compose-config: setup  ## validate docker-compose.yaml (docker-compose config -q, offline)
	@$(PY) -m clever_devkit.system_tools docker-compose >/dev/null
	docker-compose -f docker-compose.yaml config -q && echo "docker-compose.yaml is valid"

bench: setup  ## benchmark a SIZE-student district (default 20000; SIZE=1000000 is the full run; see docs/PERFORMANCE.md)
	$(PY) -m clever_devkit.bench --size $(SIZE) $(if $(PROFILE),--profile) $(if $(KEEP_DATA),--keep-data) \
		$(if $(RECORD),--record) $(BENCH_ARGS)

bench-fleet: setup  ## a fleet day of DISTRICTS districts (50) under a real Airflow scheduler (EXECUTOR=local|celery)
	$(PY) -m clever_devkit.fleet --districts $(DISTRICTS) $(if $(SIZE_MIX),--size-mix "$(SIZE_MIX)") --executor $(EXECUTOR) \
		$(if $(RECORD),--record) $(FLEET_ARGS)

clean:  ## stop the warehouse and remove .venv and local state
	-$(PY) -m clever_devkit.pg_local destroy
	rm -rf $(VENV) .local
