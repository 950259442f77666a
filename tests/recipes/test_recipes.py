"""Every recipe under recipes/ is accepted by LLaMA-Factory's own argument parser, and the 8B recipe carries
the paper's hyperparameters (paper 4.1). Parsing only: nothing is loaded or downloaded."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
# deepspeed/ holds ZeRO configs, sasrec/ the non-LLM baseline's settings (python -m sasrec): no LLaMA-Factory recipes
NOT_LLAMAFACTORY = {"deepspeed", "sasrec"}
MODEL_DIRS = sorted(p for p in RECIPES.iterdir() if p.is_dir() and p.name not in NOT_LLAMAFACTORY)
RECIPE_FILES = sorted(p for p in RECIPES.glob("*/*.yaml") if p.parent.name not in NOT_LLAMAFACTORY)
TRAIN_FILES = [p for p in RECIPE_FILES if p.name != "merge_lora.yaml"]
PAPER_FLOOR = 1e-6  # paper 4.1: warm-up from 1e-6, cosine down to 1e-6
EXPECTED_FILES = {"atune_lora_sft.yaml", "merge_lora.yaml", "btune_lora_dpo.yaml", "full_lora_sft.yaml",
                  "wo_dpo_lora_sft.yaml", "reverse_lora_sft.yaml"}
EXPECTED_TEMPLATES = {"llama3.1-8b-instruct": "llama3", "llama3.1-70b-instruct": "llama3",
                      "qwen2.5-1.5b-instruct": "qwen", "smollm2-135m-instruct": "smollm2", "tiny": "smollm2"}
PAPER = RECIPES / "llama3.1-8b-instruct"


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def parse_recipe(path: Path, tmp_path: Path) -> tuple:
    """The recipe through LLaMA-Factory's parser, as `llamafactory-cli train|export` would parse it on a CPU
    machine with one process: local paths, no DeepSpeed (that needs torchrun), no bf16 (may need a GPU)."""
    from llamafactory.hparams import get_infer_args, get_train_args

    args = load(path)
    args["model_name_or_path"] = str(tmp_path / "model")
    if "export_dir" in args:
        args.update(adapter_name_or_path=str(tmp_path / "adapter"), export_dir=str(tmp_path / "export"))
        return get_infer_args(args)
    args.update(output_dir=str(tmp_path / "out"), dataset_dir=str(ROOT), deepspeed=None, bf16=False)
    return get_train_args(args)


def test_recipe_folders_are_complete():
    assert {p.name for p in MODEL_DIRS} == set(EXPECTED_TEMPLATES)
    for folder in MODEL_DIRS:
        assert {p.name for p in folder.glob("*.yaml")} == EXPECTED_FILES, folder.name


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_parses_with_llamafactory(path, tmp_path):
    parsed = parse_recipe(path, tmp_path)
    data_args = parsed[1]
    assert data_args.template == EXPECTED_TEMPLATES[path.parent.name]


def test_parser_rejects_a_typo(tmp_path):
    bad = tmp_path / "bad.yaml"
    args = load(PAPER / "atune_lora_sft.yaml")
    args["learning_rat"] = 1e-4
    bad.write_text(yaml.safe_dump(args))
    with pytest.raises(ValueError, match="learning_rat"):
        parse_recipe(bad, tmp_path)


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipe_datasets_and_deepspeed_exist(path):
    from selection.pairs import DATASET_INFO  # select's folder registers its own two datasets

    names = set(json.loads((ROOT / "dataset_info.json").read_text())) | set(DATASET_INFO)
    args = load(path)
    for key in ("dataset", "eval_dataset"):
        for name in filter(None, str(args.get(key) or "").split(",")):
            assert name.strip() in names, f"{path}: {key} {name!r} not in dataset_info.json"
    if args.get("deepspeed"):  # relative to the repository root, where make runs llamafactory-cli
        assert (ROOT / args["deepspeed"]).is_file()


@pytest.mark.parametrize("stage", ["z2", "z3"])
def test_deepspeed_configs(stage):
    config = json.loads((RECIPES / "deepspeed" / f"ds_{stage}_config.json").read_text())
    # The HF Trainer builds optimizer and scheduler; a block here would override the recipe's.
    assert "optimizer" not in config and "scheduler" not in config
    assert config["zero_optimization"]["stage"] == int(stage[1])
    for key in ("train_batch_size", "train_micro_batch_size_per_gpu", "gradient_accumulation_steps"):
        assert config[key] == "auto"


def test_paper_hyperparameters_in_8b_atune():
    a = load(PAPER / "atune_lora_sft.yaml")
    assert a["finetuning_type"] == "lora" and a["stage"] == "sft"
    assert a["template"] == "llama3"
    assert a["dataset"] == "behavior_anchor,behavior_aux"
    assert a["optim"].startswith("adamw")
    assert a["learning_rate"] == pytest.approx(1e-4)
    assert a["lr_scheduler_type"] == "cosine_warmup_with_min_lr"
    assert a["warmup_steps"] == pytest.approx(0.1)  # < 1: a ratio of the total steps
    assert a["num_train_epochs"] <= 8
    gpus = 8
    assert a["per_device_train_batch_size"] * gpus * a["gradient_accumulation_steps"] == 8
    assert a["bf16"] is True
    assert a["deepspeed"] == "recipes/deepspeed/ds_z2_config.json"
    assert a["eval_dataset"] == "behavior_valid_5k"  # the per-epoch best-checkpoint choice (seeded subset)
    assert a["eval_strategy"] == a["save_strategy"] == "epoch"
    assert a["load_best_model_at_end"] is True and a["metric_for_best_model"] == "eval_loss"
    assert a["save_total_limit"] >= 1


def test_8b_btune_is_dpo_from_pi_ref():
    b = load(PAPER / "btune_lora_dpo.yaml")
    assert b["stage"] == "dpo" and b["finetuning_type"] == "lora"
    assert b["dataset"] == "behavior_dpo_pairs"
    assert b["pref_loss"] == "sigmoid" and b["pref_beta"] > 0
    assert "ref_model" not in b  # the reference is the start model (merged pi_ref) with the adapter disabled
    assert b["logging_steps"] == 1


@pytest.mark.parametrize("folder", MODEL_DIRS, ids=lambda p: p.name)
def test_ablation_recipes_change_only_what_they_ablate(folder):
    """The ablation YAMLs are copies of the main ones; they may differ only in the ablated keys."""
    def diff(a: dict, b: dict) -> set:
        return {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}

    atune, btune = load(folder / "atune_lora_sft.yaml"), load(folder / "btune_lora_dpo.yaml")
    assert diff(atune, load(folder / "full_lora_sft.yaml")) == {"dataset", "output_dir"}
    assert load(folder / "full_lora_sft.yaml")["dataset"] == "behavior_train_all"
    assert diff(atune, load(folder / "reverse_lora_sft.yaml")) == {"dataset", "output_dir"}
    assert load(folder / "reverse_lora_sft.yaml")["dataset"].split(",")[0] == "behavior_tail_medium"
    wo_dpo = load(folder / "wo_dpo_lora_sft.yaml")
    assert diff(btune, wo_dpo) == {"stage", "dataset", "pref_beta", "pref_loss", "output_dir"}
    assert wo_dpo["stage"] == "sft" and wo_dpo["dataset"] == "behavior_selected_sft"


def _make_dry_run(*args: str) -> str:
    """What `make DRY_RUN=1 <target>` lists: each stage that would run, with its command and launcher variables."""
    out = subprocess.run([sys.executable, "-m", "pipeline", "--dry-run", *args], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    return out.stdout


def test_make_wires_template_launcher_and_overrides(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "stats.json").write_text("{}")
    out = _make_dry_run("b-tune", "MODEL=llama3.1-8b-instruct", f"RUN_DIR={tmp_path}", "NPROC=8",
                        "BASE_MODEL=meta-llama/Llama-3.1-8B-Instruct", "ARGS=num_train_epochs=1")
    assert "--template llama3" in out  # read from the recipe
    train = [line for line in out.splitlines() if "llamafactory-cli train" in line]
    assert len(train) == 2  # A-tune, then DPO
    assert all("FORCE_TORCHRUN=1" in t and "NPROC_PER_NODE=8" in t and "num_train_epochs=1" in t for t in train)
    assert f"model_name_or_path={tmp_path}/pi_ref" in train[1] and "btune_lora_dpo.yaml" in train[1]
    cpu = _make_dry_run("a-tune", "MODEL=tiny", f"RUN_DIR={tmp_path}", "DEEPSPEED=none")
    assert "FORCE_TORCHRUN" not in cpu and "deepspeed=null" in cpu


# ---- learning-rate schedule (paper 4.1: linear warm-up over 10 % of the steps from 1e-6, cosine to 1e-6) ----
class ZeroLikeOptimizer:
    """What the HF Trainer hands to create_scheduler under DeepSpeed ZeRO: accelerate's wrapper whose `defaults`
    forwards to DeepSpeed's ZeRO optimizer, which has none. Built on torch's Optimizer so LambdaLR accepts it."""

    @classmethod
    def make(cls, lr: float):
        import torch

        class _Zero(torch.optim.Optimizer):
            def __init__(self):  # no super().__init__: DeepSpeed's optimizer never sets `defaults` either
                self.param_groups, self.state = [{"params": [], "lr": lr}], {}

            @property
            def defaults(self):
                raise AttributeError("'DeepSpeedZeroOptimizer' object has no attribute 'defaults'")

            def step(self, closure=None):
                return None

        return _Zero()


def schedule(training_args, total_steps: int, kwargs: dict | None = None) -> list[float]:
    """Learning rate of every optimizer step, from the scheduler built exactly as Trainer.create_scheduler does."""
    from transformers.optimization import get_scheduler

    optimizer = ZeroLikeOptimizer.make(training_args.learning_rate)
    scheduler = get_scheduler(training_args.lr_scheduler_type, optimizer=optimizer,
                              num_warmup_steps=training_args.get_warmup_steps(total_steps),
                              num_training_steps=total_steps,
                              scheduler_specific_kwargs=training_args.lr_scheduler_kwargs if kwargs is None else kwargs)
    lrs = []
    for _ in range(total_steps):
        lrs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("path", TRAIN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_schedule_warms_up_from_and_anneals_to_the_floor(path, tmp_path):
    training_args = parse_recipe(path, tmp_path)[2]
    peak, kwargs, steps = training_args.learning_rate, training_args.lr_scheduler_kwargs, 200
    lrs = schedule(training_args, steps)
    warmup = training_args.get_warmup_steps(steps)
    assert warmup == 20  # warmup_steps 0.1 of 200
    assert lrs[0] == pytest.approx(peak * kwargs["warmup_lr_rate"])  # the first step, not 0
    assert lrs[warmup - 1] == pytest.approx(peak) and max(lrs) == pytest.approx(peak)
    assert all(a < b for a, b in zip(lrs[:warmup - 1], lrs[1:warmup]))  # linear rise
    assert all(a >= b for a, b in zip(lrs[warmup - 1:], lrs[warmup:]))  # cosine fall
    assert lrs[-1] == pytest.approx(peak * kwargs["min_lr_rate"]) and min(lrs) == pytest.approx(lrs[-1])
    if path.parent.name != "tiny":  # the tiny model keeps the paper's ratios around its larger peak
        assert lrs[0] == pytest.approx(PAPER_FLOOR) and lrs[-1] == pytest.approx(PAPER_FLOOR)


def test_min_lr_would_break_under_deepspeed(tmp_path):
    """Why the floor is a ratio: `min_lr` reads optimizer.defaults, which the ZeRO-wrapped optimizer lacks."""
    training_args = parse_recipe(PAPER / "atune_lora_sft.yaml", tmp_path)[2]
    with pytest.raises(AttributeError, match="defaults"):
        schedule(training_args, 10, {"min_lr": PAPER_FLOOR, "warmup_lr_rate": 0.01})


def test_previous_scheduler_started_at_zero(tmp_path):
    """The scheduler this replaces (`cosine_with_min_lr`) spends its first step at learning rate 0."""
    training_args = parse_recipe(PAPER / "atune_lora_sft.yaml", tmp_path)[2]
    training_args.lr_scheduler_type = "cosine_with_min_lr"
    assert schedule(training_args, 200, {"min_lr_rate": 0.01})[0] == 0.0


# ---- several nodes, validation subset, throughput profile ----
@pytest.mark.parametrize("folder", ["llama3.1-8b-instruct", "qwen2.5-1.5b-instruct"])
def test_multi_gpu_recipes_fail_fast_and_tokenize_once(folder, tmp_path):
    for path in (RECIPES / folder).glob("*.yaml"):
        if path.name == "merge_lora.yaml":
            continue
        _, data_args, training_args, *_ = parse_recipe(path, tmp_path)
        assert 600 <= training_args.ddp_timeout <= 3 * 3600, path.name  # a dead rank fails within hours
        assert data_args.data_shared_file_system and not data_args.overwrite_cache, path.name


def test_validation_subset_is_the_seeded_head_of_valid(tmp_path):
    """behavior_valid_5k reads the first 5,000 rows of valid.jsonl (prepare writes it in seeded random order)
    through the `split` that LLaMA-Factory passes to datasets.load_dataset; fewer rows give them all."""
    from datasets import load_dataset
    from llamafactory.data.parser import get_dataset_list

    (attr,) = get_dataset_list(["behavior_valid_5k"], str(ROOT))
    (full,) = get_dataset_list(["behavior_valid"], str(ROOT))
    assert attr.dataset_name == full.dataset_name == "valid.jsonl"
    for rows in (6000, 30):
        path = tmp_path / f"{rows}.jsonl"
        path.write_text("".join(json.dumps({"instruction": f"q{i}", "output": "a"}) + "\n" for i in range(rows)))
        subset = load_dataset("json", data_files=str(path), split=attr.split, cache_dir=str(tmp_path / "c"))
        assert subset["instruction"] == [f"q{i}" for i in range(min(rows, 5000))]


def test_sft_recipes_choose_the_checkpoint_on_the_subset():
    for path in TRAIN_FILES:
        args = load(path)
        if args.get("eval_strategy") == "epoch":
            assert args["eval_dataset"] == "behavior_valid_5k", path
            assert args.get("early_stopping_steps") is None, path  # opt-in only: the paper trains up to 8 epochs


def test_packing_is_an_opt_in_profile(tmp_path):
    """The shipped recipe keeps the paper's batch (no packing); the profile's ATUNE_ARGS parse through
    LLaMA-Factory on top of it and switch packing on with checkpointing (4,096 tokens do not fit without)."""
    from llamafactory.hparams import get_train_args

    recipe = PAPER / "atune_lora_sft.yaml"
    model_args, data_args, *_ = parse_recipe(recipe, tmp_path)
    assert not data_args.packing and model_args.disable_gradient_checkpointing  # shipped: unpacked, no recompute
    profile = dict(line.split("=", 1) for line in (PAPER / "packing.env").read_text().splitlines()
                   if line and not line.startswith("#"))
    args = load(recipe)
    args.update(model_name_or_path=str(tmp_path / "model"), output_dir=str(tmp_path / "out"), dataset_dir=str(ROOT),
                deepspeed=None, bf16=False)
    for item in profile["ATUNE_ARGS"].split():  # key=value as llamafactory-cli reads it (YAML values)
        args.update(yaml.safe_load(item.replace("=", ": ", 1)))
    model_args, data_args, *_ = get_train_args(args)
    assert data_args.packing and data_args.neat_packing and not model_args.disable_gradient_checkpointing
    assert data_args.cutoff_len == 4096 - 1  # LLaMA-Factory keeps one token free when packing


@pytest.mark.parametrize("path", TRAIN_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_recipes_fit_many_behavior_prompts(path):
    """The longest sample measured by bench_train.py --lengths-only (~200 multi-word categories, L = 20,
    SmolLM2 tokenizer: 1,243 tokens; aux with the tiny model's 1k-vocabulary tokenizer: 1,925) is not cut."""
    longest = 1925 if path.parent.name == "tiny" else 1243
    assert load(path)["cutoff_len"] > longest


def test_70b_recipes_shard_the_weights_and_recompute_activations():
    """Llama-3.1-70B on 8 x A100-80GB: ZeRO-3 for every training recipe (141 GB of bf16 weights cannot sit
    whole on one GPU, as ZeRO-2 would keep them) and gradient checkpointing on (see the memory arithmetic)."""
    folder = RECIPES / "llama3.1-70b-instruct"
    for path in sorted(folder.glob("*_lora_*.yaml")):
        recipe = load(path)
        assert recipe["deepspeed"].endswith("ds_z3_config.json"), path.name
        assert not recipe.get("disable_gradient_checkpointing", False), path.name
    eight_b = load(RECIPES / "llama3.1-8b-instruct" / "atune_lora_sft.yaml")
    seventy_b = load(folder / "atune_lora_sft.yaml")
    changed = {k for k in eight_b.keys() | seventy_b.keys() if eight_b.get(k) != seventy_b.get(k)}
    assert changed == {"model_name_or_path", "deepspeed", "disable_gradient_checkpointing"}
    assert json.loads((RECIPES / "deepspeed" / "ds_z3_config.json").read_text())["zero_optimization"]["stage"] == 3


PARSE_UNDER_TORCHRUN = '''
import json, sys, yaml
from llamafactory.hparams import get_train_args
out = {}
for path, extra in json.loads(sys.argv[1]):
    args = yaml.safe_load(open(path))
    args.update(extra, bf16=False)          # no bf16 on this CPU; everything else, DeepSpeed included, as written
    model, _, training, finetuning, _ = get_train_args(args)
    out[path + json.dumps(extra)] = [training.hf_deepspeed_config.config["zero_optimization"]["stage"],
                                     finetuning.finetuning_type, model.quantization_bit]
print("PARSED " + json.dumps(out))
'''


def test_70b_recipes_parse_under_torchrun_with_deepspeed_and_qlora(tmp_path):
    """LLaMA-Factory's parser refuses DeepSpeed outside a distributed launch, so the recipes are parsed as
    `llamafactory-cli train` parses them under torchrun (one CPU rank): ZeRO-3 as written, and the QLoRA
    variant for 40 GB cards (quantization_bit=4) on top."""
    import subprocess
    import sys

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama"}')
    script = tmp_path / "parse.py"
    script.write_text(PARSE_UNDER_TORCHRUN)
    folder = RECIPES / "llama3.1-70b-instruct"
    common = {"model_name_or_path": str(model), "dataset_dir": str(ROOT), "output_dir": str(tmp_path / "out")}
    jobs = [(str(folder / "atune_lora_sft.yaml"), common), (str(folder / "btune_lora_dpo.yaml"), common),
            (str(folder / "atune_lora_sft.yaml"), {**common, "quantization_bit": 4})]
    torchrun = Path(sys.executable).with_name("torchrun")
    proc = subprocess.run([str(torchrun), "--nproc_per_node", "1", "--standalone", str(script), json.dumps(jobs)],
                          check=False, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    parsed = json.loads(proc.stdout.split("PARSED ", 1)[1])
    assert list(parsed.values()) == [[3, "lora", None], [3, "lora", None], [3, "lora", 4]]
