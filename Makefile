# Everything a fresh clone needs: `make run` (main job) and `make test` (whole suite) do all set-up.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
DOLPHIN := $(VENV)/bin/dolphin
STAMP := $(VENV)/.installed
export DOLPHIN_HOME ?= $(CURDIR)/.dolphin

.PHONY: install run test bench scan clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH (Python 3.11)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# Main job: the development data set end to end.
run: $(STAMP)
	$(DOLPHIN) scan --data spot-5m-2024 --out $(DOLPHIN_HOME)/scans/spot-5m-2024

test: $(STAMP)
	$(PY) -m pytest -q tests

bench: $(STAMP)
	$(PY) bench/scanner.py

clean:
	rm -rf $(VENV) .pytest_cache
