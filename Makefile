# `make run` and `make test` work on a fresh machine with Python 3.11, make and gcc.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test bench bench-resize bench-faults soak clean

run: $(VENV)/.runtime
	$(PY) -m src.launcher

test: $(VENV)/.dev
	$(PY) -m pytest

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps: reinstall only when the requirement files change.
$(VENV)/.runtime: requirements.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) var/redis .pytest_cache

# Benchmarks: measured figures, never assertions. See docs/performance.md.
bench: $(VENV)/.dev
	$(PY) bench/waiting_tasks.py

bench-resize: $(VENV)/.dev
	$(PY) bench/resize.py

# Time to recover from each fault of "What survives what"; see docs/reliability.md.
bench-faults: $(VENV)/.dev
	$(PY) bench/faults.py

# Minutes of mixed load on `make run` while its parts are killed; see docs/reliability.md.
DURATION ?= 180
soak: $(VENV)/.dev
	$(PY) bench/soak.py --duration $(DURATION)
