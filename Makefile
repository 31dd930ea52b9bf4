# `make run` and `make test` work on a fresh machine with Python 3.11, make and gcc.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python

.PHONY: run test test-fast lint bench bench-resize bench-faults soak clean dashboard screenshot

run: $(VENV)/.runtime
	$(PY) -m src.local.launcher

# The lint, then every test; independent test modules run side by side (TEST_JOBS runners).
TEST_JOBS ?= 3
test: $(VENV)/.dev lint
	$(PY) -m pytest -n $(TEST_JOBS) --dist loadfile

# The fast layer alone: no service processes, answers in seconds.
test-fast: $(VENV)/.dev
	$(PY) -m pytest tests/unit

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

# Stamps: reinstall only when the requirement files change.
$(VENV)/.runtime: requirements.txt requirements-service.txt | $(PY)
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# The dev venv also puts the checkout and tests/ on its path, so bench/ and docs/ scripts
# import `src` and the test harness without editing sys.path.
$(VENV)/.dev: requirements.txt requirements-service.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install -q -r requirements-dev.txt
	printf '%s\n%s\n' "$(CURDIR)" "$(CURDIR)/tests" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/photo_tasks_dev.pth"
	touch $@ $(VENV)/.runtime

clean:
	rm -rf $(VENV) $(DASHBOARD_VENV) var/redis var/peers .pytest_cache

# Benchmarks: measured figures, never assertions. See docs/performance.md.
bench: $(VENV)/.dev
	$(PY) bench/waiting_tasks.py

bench-resize: $(VENV)/.dev
	$(PY) bench/resize.py

# Callback latency, task end -> receiver, at 100 tasks/s; see docs/performance.md.
.PHONY: bench-callbacks
bench-callbacks: $(VENV)/.dev
	$(PY) bench/callbacks.py

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

# Ours beside thumbor 7.8 and a Django + DRF + Celery stand-in for drf_img_resize, each peer in
# a venv of its own under var/peers/ (made on first use from bench/peers/requirements-*.txt); see
# docs/cost.md, section 7. About 15 minutes on a quiet 2-core machine.
.PHONY: bench-peers
bench-peers: $(VENV)/.dev
	command -v wrk >/dev/null || apt-get install -y -q wrk || (apt-get update -q && apt-get install -y -q wrk)
	$(PY) bench/peers.py --rounds 5

# The JPEG encoder's settings, and a small photo's stages; see docs/cost.md.
bench-encoder: $(VENV)/.dev
	$(PY) bench/encoder.py --runs 15

# How long the file sweep takes with many stored files in use; see docs/performance.md.
.PHONY: bench-sweep
bench-sweep: $(VENV)/.dev
	$(PY) bench/sweep_files.py

# `Prefer: wait` against polling, and POST with it against the scorer's own time; see docs/performance.md.
.PHONY: bench-wait
bench-wait: $(VENV)/.dev
	$(PY) bench/waiting_answers.py --runs 30
# What the object store costs per resize task and in the work horse; see docs/performance.md.
.PHONY: bench-storage
bench-storage: $(VENV)/.dev
	$(PY) bench/storage.py --rounds 9
# One user floods while another uses the service; the limiter's cost. See docs/performance.md.
.PHONY: bench-flood
bench-flood: $(VENV)/.dev
	$(PY) bench/flood.py

# Time to recover from each fault of "What survives what"; see docs/reliability.md.
bench-faults: $(VENV)/.dev
	$(PY) bench/faults.py

# Minutes of mixed load on `make run` while its parts are killed; see docs/reliability.md.
DURATION ?= 180
soak: $(VENV)/.dev
	$(PY) bench/soak.py --duration $(DURATION)
