# Everything a fresh clone needs: `make run` (main job) and `make test` (whole suite) do all set-up.
SHELL := /bin/bash
# The interpreter the venv is made from: Python 3.12. Unset by default: `python3.12` on PATH if it runs
# (pyenv's shim refuses unless PYENV_VERSION names a 3.12), else $(pyenv root)/versions/3.12.*/bin/python3.12
# (newest first). `make PYTHON=/path/to/python3.12 ...` overrides.
PYTHON ?=
PY_MINOR := 3.12
VENV := .venv
PY := $(VENV)/bin/python
DOLPHIN := $(VENV)/bin/dolphin
STAMP := $(VENV)/.installed
export DOLPHIN_HOME ?= $(CURDIR)/.dolphin
# One BLAS thread: the scanner is single-threaded and multi-threaded OpenBLAS thrashes on 2 busy cores.
export OPENBLAS_NUM_THREADS ?= 1

.PHONY: install run test bench browser compose clean dagster python demo layout
DAGSTER_PORT ?= 3000

# `python3.X -c ...` exits 0 only for an interpreter that runs and is 3.X
is_py = "$(1)" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(PY_MINOR)".split("."))))' >/dev/null 2>&1
define find_python
py="$(PYTHON)"; \
if [ -n "$$py" ]; then \
  $(call is_py,$$py) || { echo "PYTHON=$$py is not a working Python $(PY_MINOR)" >&2; exit 1; }; \
elif $(call is_py,python$(PY_MINOR)); then py="$$(command -v python$(PY_MINOR))"; \
else \
  root="$$(pyenv root 2>/dev/null || echo "$${PYENV_ROOT:-$$HOME/.pyenv}")"; \
  for c in $$(ls -d "$$root"/versions/$(PY_MINOR).*/bin/python$(PY_MINOR) 2>/dev/null | sort -rV); do \
    if $(call is_py,$$c); then py="$$c"; break; fi; \
  done; \
fi; \
[ -n "$$py" ] || { echo "need Python $(PY_MINOR): a working python$(PY_MINOR) on PATH, or one installed with pyenv" \
  "($$root/versions/$(PY_MINOR).*/bin/python$(PY_MINOR); e.g. pyenv install $(PY_MINOR)), or make PYTHON=/path/to/python$(PY_MINOR)" >&2; \
  exit 1; }
endef

# Which Python 3.12 the venv would be made from (or why there is none)
python:
	@$(find_python); echo "$$py"

$(STAMP): pyproject.toml
	@$(find_python); \
	if [ -x $(PY) ] && ! $(call is_py,$(PY)); then \
	  echo "$(VENV) is not Python $(PY_MINOR): recreating it"; rm -rf $(VENV); fi; \
	if [ ! -x $(PY) ]; then echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); fi
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
	$(PY) -m pytest -q -n 2 --dist loadgroup --no-loadscope-reorder --durations=30 tests

# README's layout section from the tree (tests/unit/test_layout.py fails when it drifts)
layout: $(STAMP)
	$(PY) scripts/layout.py --write

bench: $(STAMP)
	$(PY) bench/scanner.py
	$(PY) bench/backtest.py
	$(PY) bench/runtime.py
	$(PY) bench/store.py
	$(PY) bench/bridge.py  # scan file -> scan_latest / DOLPHIN_SCAN_EVENTS / acb_state via `dolphin bridge`
	$(PY) bench/book.py  # `dolphin book` vs `dolphin venue`: CPU and event -> store latency, 50 and 400 symbols
	$(PY) bench/ablation.py  # BLUE with / without ACB and the full risk layer, in- and out-of-sample
	$(PY) bench/scale.py  # ~10 min: streaming backtest at 50 real / 400 SYNTHETIC assets (RSS, time), store JSON vs Arrow, decisions at 400
	$(PY) bench/backfill.py  # ~17 min: 249 daily partitions through the whole Dagster graph

# Dagster UI + daemon (http://127.0.0.1:$(DAGSTER_PORT)); DAGSTER_HOME = $(DOLPHIN_HOME)/dagster (dagster.yaml written on first use)
dagster: $(STAMP)
	$(PY) -m dolphin_assets.dev --port $(DAGSTER_PORT)

# The whole stack on loopback (dagster dev with the scan-file sensor on, venue replaying a day of usdtm-5m-2023,
# bridge, runtime sandbox); Ctrl-C stops every process. DAGSTER_PORT=0: a free port; DEMO_ARGS: more options
# (e.g. DEMO_ARGS="--days 0.1 --mode live"); DOLPHIN_HZ_MEMBERS/DOLPHIN_HZ_CLUSTER: Hazelcast for every process
DEMO_ARGS ?=
demo: $(STAMP)
	$(DOLPHIN) demo --dagster-port $(DAGSTER_PORT) $(DEMO_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
