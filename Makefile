# seglab: every target bootstraps .venv itself (torch first, then the pinned rest).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
# A CUDA user overrides this, e.g. TORCH_SPEC="torch==2.13.0 --index-url <your CUDA wheel index>"
TORCH_SPEC ?= torch==2.13.0
UV_SPEC ?= uv==0.13.10
UI_PORT ?= 5000
PYTEST_ARGS ?=
# Tests on this many pytest-xdist workers. 2 (the default): the Ray modules (pytestmark = RAY, one
# xdist group, tests/integration/conftest.py) run one after another in one worker, on one Ray cluster
# for the session, while every other test fills the other core; 0: everything in one process.
TEST_WORKERS ?= 2

# No Ray token auth (a local ray.init() would otherwise write ~/.ray/auth_token and turn it on for the
# next ray start, failing ray job submit). Safe because every Ray cluster seglab starts listens on
# 127.0.0.1 only (seglab/platform/cluster/local.py; tests/integration/test_job_and_resume.py and test_faults.py check it).
export RAY_AUTH_MODE := disabled
export RAY_USAGE_STATS_ENABLED := 0
export NO_ALBUMENTATIONS_UPDATE := 1
export SEGLAB_HOME := $(CURDIR)
export MLFLOW_TRACKING_URI ?= sqlite:///$(CURDIR)/mlflow.db

.PHONY: setup demo test test-unit test-integration ui bench clean

# torch (and uv) with pip, which honours the machine's pip configuration (here: a local CPU wheel; a CUDA
# user sets TORCH_SPEC); the ~190 pinned rest with uv (seconds instead of ~2.5 minutes of pip), or pip
# when uv cannot reach the registry.
$(VENV)/.installed: pyproject.toml constraints.txt
	@echo "==> creating $(VENV) (torch first: $(TORCH_SPEC))"
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@set -o pipefail; $(VENV)/bin/python -m pip install -q $(TORCH_SPEC) 2>&1 | grep -v '^WARNING: Location' || test $${PIPESTATUS[0]} -eq 0
	@$(VENV)/bin/python -m pip install -q $(UV_SPEC) 2>/dev/null || true
	@echo "==> installing seglab and its pinned dependencies"
	@$(VENV)/bin/uv pip install -q --python $(VENV)/bin/python -c constraints.txt -e ".[dev]" 2>/dev/null \
		|| { set -o pipefail; $(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[dev]" 2>&1 \
		| grep -v -E '^WARNING: Location|BuildBackendWarning|Editable installation|^ *!!|\*{10}|Please be careful|same name as your package|take precedence during|with strategy, WheelFile|^\s*$$' \
		|| test $${PIPESTATUS[0]} -eq 0; }
	@touch $@

setup: $(VENV)/.installed
	@bash scripts/setup_system.sh  # system packages some tests need (apt: postgresql, chromium, chromium-driver); quiet and < 1 s when present

demo: setup  ## the OVeNet-vs-HRNet sweep on the embedded data set, via `ray job submit`
	@bash scripts/demo.sh $(ARGS)

test: setup  ## the whole test suite (unit + integration with a real Ray cluster and MLflow store); the 30 slowest listed
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=30 $(PYTEST_ARGS)

test-unit: setup
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup -m "not integration" $(PYTEST_ARGS)

test-integration: setup
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup --durations=30 -m integration $(PYTEST_ARGS)

# The first screen: once the UI answers, `seglab ui` prints the latest sweep's links (comparison, grouped
# view, compare view; workflowType=machine_learning in each, so MLflow 3.17 opens the runs, not GenAI
# Traces) and opens the first in a browser where there is a display (UI_BROWSER=0: never).
ui: setup  ## MLflow UI on 127.0.0.1 over the same store, and the latest sweep's links
	@echo "MLflow UI: http://127.0.0.1:$(UI_PORT)  (store $(MLFLOW_TRACKING_URI)); the latest sweep's links follow once it answers"
	@(UI_PORT=$(UI_PORT) $(VENV)/bin/python -m seglab.platform.cli ui --wait 120 $(if $(filter 0,$(UI_BROWSER)),--no-browser,) &) ; \
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false exec $(VENV)/bin/mlflow ui --backend-store-uri "$(MLFLOW_TRACKING_URI)" \
		--host 127.0.0.1 --port $(UI_PORT) --workers 1

bench: setup
	@$(VENV)/bin/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf runs outputs mlartifacts mlflow.db
