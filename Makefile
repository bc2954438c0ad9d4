# Everything a fresh clone needs: `make run` (main job) and `make test` (whole suite) do all set-up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DOLPHIN := $(VENV)/bin/dolphin
STAMP := $(VENV)/.installed
export DOLPHIN_HOME ?= $(CURDIR)/.dolphin
# One BLAS thread: the scanner is single-threaded and multi-threaded OpenBLAS thrashes on 2 busy cores.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install run test bench browser compose clean dagster
DAGSTER_PORT ?= 3000

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Main job: BLUE backtest of the development set with embedded defaults -> metrics, floors, HTML report.
run: $(STAMP)
	$(DOLPHIN) backtest --data spot-5m-2024

# Browser tests need Debian's chromium (root on CI/dev machines; otherwise install it yourself).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "installing chromium (apt-get) for the browser tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The compose tests parse docker/compose.yaml with Debian's docker-compose 1.29 (no Docker engine needed;
# --no-install-recommends keeps the engine package out).
compose:
	@command -v docker-compose >/dev/null 2>&1 || { \
	  echo "installing docker-compose (apt-get) for the compose tests"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; }

test: $(STAMP) browser compose
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/scanner.py
	$(PY) bench/backtest.py
	$(PY) bench/runtime.py
	$(PY) bench/store.py
	$(PY) bench/bridge.py  # scan file -> scan_latest / DOLPHIN_SCAN_EVENTS / acb_state via `dolphin bridge`
	$(PY) bench/ablation.py  # BLUE with / without ACB and the full risk layer, in- and out-of-sample
	$(PY) bench/backfill.py  # ~17 min: 249 daily partitions through the whole Dagster graph

# Dagster UI + daemon (http://127.0.0.1:$(DAGSTER_PORT)); DAGSTER_HOME = $(DOLPHIN_HOME)/dagster (dagster.yaml written on first use)
dagster: $(STAMP)
	$(PY) -m dolphin_assets.dev --port $(DAGSTER_PORT)

clean:
	rm -rf $(VENV) .pytest_cache
