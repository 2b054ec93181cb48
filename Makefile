# The analysis is a DAG that make rebuilds:
#   simulate -> raw files (data/generated/...) -> ingest -> DuckDB store -> notebooks -> report
# Two commands set up a fresh machine: `make report` (the main job) and `make test`.

PYTHON   ?= python3
VENV     ?= .venv
BIN      := $(VENV)/bin
SCENARIO ?= april-2026
SEED     ?= 1
DATA_DIR ?= data/generated/$(SCENARIO)
DB       ?= data/incident.duckdb
BUILD    ?= build
export TZ := UTC

PKG_SOURCES := $(shell find analysis -name '*.py' -o -name '*.go' -o -name '*.sql' -o -name '*.j2' 2>/dev/null)
NOTEBOOKS   := $(sort $(wildcard notebooks/*.ipynb))

.PHONY: all setup sysdeps report test lint lab lab-repro bench docs clean help

help:
	@echo "make report     build $(BUILD)/report.html, report.pdf and slides.html from the bundled $(SCENARIO) incident"
	@echo "make test       run every test (unit, property, end-to-end, notebooks, browser, lab)"
	@echo "make lab        JupyterLab on the notebooks (HOST=127.0.0.1 PORT=8888 TOKEN=random)"
	@echo "make lab-repro  reproduce the outage for real (root, network namespace, memcached)"
	@echo "make bench      speed and memory benchmark (prints a table, writes $(BUILD)/bench/)"

# --- environment -------------------------------------------------------------
$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[notebooks,test,bench]'
	touch $@

setup: $(BIN)/.installed

# Debian packages for the browser test, the lab and the real-Prometheus round
# trip. Installed only when
# missing and when we can (root); the tests that need them skip with a reason
# otherwise.
sysdeps:
	@bash scripts/sysdeps.sh

# --- the data DAG --------------------------------------------------------------
$(DATA_DIR)/truth.json: $(BIN)/.installed $(PKG_SOURCES)
	$(BIN)/postmortem simulate --scenario $(SCENARIO) --seed $(SEED) --out $(DATA_DIR)

$(DB): $(DATA_DIR)/truth.json
	$(BIN)/postmortem ingest $(DATA_DIR) --db $(DB) --replace

# The page, its slides and its PDF in one run; the PDF is printed by headless Chromium
# (`make sysdeps` installs it as root): without one, the PDF is left out and said so.
CHROMIUM := $(shell command -v chromium || command -v chromium-browser)
REPORT_FORMATS ?= html,slides$(if $(CHROMIUM),$(comma)pdf,)
comma := ,
REPORT_OUTPUTS := $(BUILD)/report.html $(BUILD)/slides.html $(if $(CHROMIUM),$(BUILD)/report.pdf,)
# one run writes them all (a grouped target): a page written alone, as the browser
# tests write one, leaves the slides and the PDF still to make
$(REPORT_OUTPUTS) &: $(DB) $(NOTEBOOKS) $(PKG_SOURCES)
	$(if $(CHROMIUM),,@echo "report: no chromium on PATH, so no $(BUILD)/report.pdf (make sysdeps, as root)")
	$(BIN)/postmortem report --db $(DB) --data-dir $(DATA_DIR) --out $(BUILD) \
	  --format $(REPORT_FORMATS)

report: $(REPORT_OUTPUTS)

# --- checks ------------------------------------------------------------------
lint: $(BIN)/.installed
	$(BIN)/ruff check .

# The store first: its rollups carry the analysis code's fingerprint, so after an edit
# the notebooks (nbval) would read rollups rebuilt in memory instead of the stored ones.
test: $(BIN)/.installed sysdeps $(DB)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests notebooks --nbval-lax --nbval-current-env

# --- interactive and heavy jobs --------------------------------------------------
# JupyterLab on the notebooks: HOST (default 127.0.0.1; 0.0.0.0 to reach it from another
# machine), PORT (8888) and TOKEN (a fresh random one unless given) set where and how to
# reach it; the URL with the token is printed. No browser is opened; root may run it.
HOST  ?= 127.0.0.1
PORT  ?= 8888
TOKEN ?= $(shell $(PYTHON) -c 'import secrets; print(secrets.token_hex(16))')
lab: $(BIN)/.installed $(DB)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	@echo "JupyterLab: http://$(HOST):$(PORT)/lab?token=$(TOKEN)"
	$(BIN)/jupyter lab notebooks/ --config=scripts/jupyter_server_config.py \
	  --ServerApp.ip=$(HOST) --ServerApp.port=$(PORT) --ServerApp.port_retries=0 \
	  --IdentityProvider.token=$(TOKEN) $(if $(filter 0,$(shell id -u)),--allow-root,)

lab-repro: $(BIN)/.installed sysdeps
	$(BIN)/postmortem lab --variant naive --out data/lab/naive
	$(BIN)/postmortem ingest data/lab/naive --db data/lab/naive.duckdb --replace
	$(BIN)/postmortem chain --db data/lab/naive.duckdb

bench: $(BIN)/.installed
	$(BIN)/python scripts/bench.py --out $(BUILD)/bench

docs: $(BIN)/.installed
	$(BIN)/postmortem schema > docs/data-dictionary.md

clean:
	rm -rf $(BUILD) .$(BUILD).failed data/generated $(DB) $(DB).wal $(DB).parts
