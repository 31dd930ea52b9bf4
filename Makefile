# `make run` and `make test` work on a fresh machine with Python 3.11, make and gcc.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench bench-resize bench-faults soak clean dashboard screenshot

run: $(VENV)/.runtime
	$(PY) -m src.local.launcher

test: $(VENV)/.dev
	$(PY) -m pytest

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps: reinstall only when the requirement files change.
$(VENV)/.runtime: requirements.txt requirements-service.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-service.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) $(DASHBOARD_VENV) var/redis .pytest_cache

# Benchmarks: measured figures, never assertions. See docs/performance.md.
bench: $(VENV)/.dev
	$(PY) bench/waiting_tasks.py

bench-resize: $(VENV)/.dev
	$(PY) bench/resize.py

# rq-dashboard in a venv of its own, so it never changes the service's rq pin.
DASHBOARD_VENV := .venv-dashboard

dashboard: $(DASHBOARD_VENV)/.installed
	$(DASHBOARD_VENV)/bin/python -m src.local.dashboard

$(DASHBOARD_VENV)/.installed: requirements-dashboard.txt
	$(PYTHON) -m venv $(DASHBOARD_VENV)
	$(DASHBOARD_VENV)/bin/python -m pip install -q -r requirements-dashboard.txt
	touch $@

# The page with a finished resize, for the README (needs Debian's chromium).
screenshot: $(VENV)/.dev
	$(PY) docs/screenshot.py docs/page.png

.PHONY: bench-memory
bench-memory: $(VENV)/.dev
	$(PY) bench/web_memory.py --runs 3 --uploads 8

# Needs wrk (Debian's package; installed here when missing, which takes root).
.PHONY: bench-http
bench-http: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) bench/http_load.py

# What one request costs the answering process, one at a time; see docs/performance.md.
.PHONY: bench-cost
bench-cost: $(VENV)/.dev
	$(PY) bench/request_cost.py

# What one resize task costs across every process, and where it goes; see docs/cost.md.
.PHONY: bench-task bench-encoder
bench-task: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) bench/task_cost.py --rounds 5

# The JPEG encoder's settings, and a small photo's stages; see docs/cost.md.
bench-encoder: $(VENV)/.dev
	$(PY) bench/encoder.py --runs 15

# How long the file sweep takes with many stored files in use; see docs/performance.md.
.PHONY: bench-sweep
bench-sweep: $(VENV)/.dev
	$(PY) bench/sweep_files.py

# Time to recover from each fault of "What survives what"; see docs/reliability.md.
bench-faults: $(VENV)/.dev
	$(PY) bench/faults.py

# Minutes of mixed load on `make run` while its parts are killed; see docs/reliability.md.
DURATION ?= 180
soak: $(VENV)/.dev
	$(PY) bench/soak.py --duration $(DURATION)
